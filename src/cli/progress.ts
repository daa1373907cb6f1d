/**
 * A one-line progress display on a terminal stream: done/total, rate, ETA.
 * Redraws at most ten times a second; `finish` ends the line.
 */
export class ProgressBar {
  private readonly started = performance.now();
  private lastDraw = 0;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly label: string,
    private readonly unit: string,
    private readonly format: (n: number) => string = (n) => String(Math.round(n)),
  ) {}

  /** `total` may be undefined when unknown; the bar then shows count and rate only. */
  update(done: number, total?: number, force = false): void {
    const now = performance.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const seconds = (now - this.started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    let line = `${this.label} ${this.format(done)}`;
    if (total !== undefined && total > 0) {
      const fraction = Math.min(done / total, 1);
      const width = 24;
      const filled = Math.round(fraction * width);
      const eta = rate > 0 ? (total - done) / rate : Infinity;
      line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(1)}% ${this.format(done)}/${this.format(total)}`;
      line += ` ${this.format(rate)} ${this.unit}/s ETA ${formatDuration(eta)}`;
    } else {
      line += ` ${this.format(rate)} ${this.unit}/s`;
    }
    this.stream.write(`\r${line}\u001b[K`);
  }

  finish(done: number, total?: number): void {
    this.update(done, total, true);
    this.stream.write('\n');
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
