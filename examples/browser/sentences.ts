/**
 * The corpus the demo searches: a few hundred short sentences on eight
 * topics, so a query about one topic finds its sentences first.
 */
const TOPICS: Record<string, { subjects: string[]; facts: string[] }> = {
  astronomy: {
    subjects: ['The planet', 'A comet', 'The telescope', 'Our galaxy', 'The moon'],
    facts: ['orbits the sun once every few years', 'shows craters in the evening light', 'was seen near the edge of the solar system', 'reflects sunlight back to the earth', 'moves across the night sky slowly'],
  },
  cooking: {
    subjects: ['The soup', 'Fresh bread', 'A tomato sauce', 'The risotto', 'Roasted vegetables'],
    facts: ['needs an hour on a low heat', 'tastes better with a pinch of salt', 'is baked until the crust turns golden', 'should be stirred every few minutes', 'goes well with olive oil and garlic'],
  },
  programming: {
    subjects: ['The compiler', 'A unit test', 'The database query', 'This function', 'The web server'],
    facts: ['reports an error on the second line', 'runs in a few milliseconds', 'returns a list of matching records', 'should handle an empty input', 'uses less memory after the refactoring'],
  },
  music: {
    subjects: ['The orchestra', 'A jazz trio', 'The pianist', 'This symphony', 'The choir'],
    facts: ['played the second movement softly', 'rehearsed the piece every morning', 'ended the concert with a loud chord', 'sang in four-part harmony', 'improvised over a slow blues'],
  },
  travel: {
    subjects: ['The train to the coast', 'Our flight', 'The old harbour town', 'A mountain hostel', 'The ferry'],
    facts: ['leaves early in the morning', 'was delayed by the storm', 'offers a view over the bay', 'is full during the summer holidays', 'needs a ticket booked in advance'],
  },
  health: {
    subjects: ['Regular exercise', 'A good night of sleep', 'Drinking water', 'The doctor', 'A balanced diet'],
    facts: ['lowers the risk of heart disease', 'helps the body recover', 'keeps the mind clear during the day', 'recommended a short walk after meals', 'includes fruit and vegetables every day'],
  },
  gardening: {
    subjects: ['The roses', 'Young tomato plants', 'The lawn', 'A fruit tree', 'The herb bed'],
    facts: ['need water every second day in summer', 'grow best in full sun', 'should be pruned in late winter', 'were planted along the fence', 'attract bees in the spring'],
  },
  finance: {
    subjects: ['The interest rate', 'A savings account', 'The stock market', 'Our monthly budget', 'The loan'],
    facts: ['rose by half a percent this year', 'pays a small return every month', 'fell sharply after the announcement', 'leaves room for an emergency fund', 'must be repaid over ten years'],
  },
};

const ENDINGS = ['.', ', as expected.', ', according to the report.', ' this week.', ', which surprised everyone.', ' again.'];

export const SENTENCES: readonly string[] = Object.values(TOPICS).flatMap(({ subjects, facts }) =>
  subjects.flatMap((subject, s) => facts.map((fact, f) => `${subject} ${fact}${ENDINGS[(s + f) % ENDINGS.length]}`)),
).concat(Object.values(TOPICS).flatMap(({ subjects, facts }) => subjects.map((subject, s) => `${subject} ${facts[(s + 2) % facts.length]} and ${facts[(s + 3) % facts.length]}.`)));
