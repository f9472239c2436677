// Two projects: fast unit specs beside the code, and e2e specs over HTTP against a real
// PostgreSQL and the real local wallet daemon process (started once in global setup).
const transform = { '^.+\\.(t|j)sx?$': ['@swc/jest'] };
// Nest 12, @scure/@noble, canonicalize, content-disposition (under @fastify/static) and cookie
// (under Fastify's inject) ship ESM only;
// let swc turn them into CommonJS for Jest.
const transformIgnorePatterns = ['/node_modules/(?!(@nestjs|@scure|@noble|canonicalize|content-disposition|cookie)/)'];
module.exports = {
  // E2E files boot whole apps and run property suites; 5 s is too short for those.
  testTimeout: 120000,
  // One worker per core (jest's default leaves one core idle): the e2e files wait on
  // PostgreSQL, daemons and child processes much of the time, and each has databases of its own.
  maxWorkers: '100%',
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      transform,
      transformIgnorePatterns,
      testMatch: ['<rootDir>/src/**/*.spec.ts'],
    },
    {
      displayName: 'e2e',
      testEnvironment: 'node',
      transform,
      transformIgnorePatterns,
      testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
      globalSetup: '<rootDir>/test/global-setup.ts',
      globalTeardown: '<rootDir>/test/global-teardown.ts',
    },
  ],
};
