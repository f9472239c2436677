// ESLint flat config: typescript-eslint's type-checked recommended rules over src, test,
// bench and scripts (types from tsconfig.check.json, which includes all of them).
// Formatting is Prettier's job (`prettier --check .` in `npm run lint`), so no stylistic
// rules here. Every rule turned off or relaxed below says why on its line.
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'dist-bench/**', 'coverage/**', 'node_modules/**', '.data/**', '.ci/**', 'bench/results/**'] },
  eslint.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { project: './tsconfig.check.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Kept on purpose (money code): no-floating-promises, no-misused-promises, only-throw-error,
      // the no-unsafe-* family in production code.
      // Nest hooks and framework callbacks (guards, throttler hooks, Jest mocks) are declared async by
      // their interfaces; an async body without await is correct there and still turns throws into rejections.
      '@typescript-eslint/require-await': 'off',
      // `_name` marks a deliberately unused binding (destructuring a field away, an unused callback argument).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
    },
  },
  {
    // A write route is declared with PostRoute/DeleteRoute (src/common/write-routes.ts), which add
    // what every write needs (in-flight count, Idempotency-Key); Nest's own decorators would skip it.
    files: ['src/**/*.ts'],
    ignores: ['src/common/write-routes.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@nestjs/common',
              importNames: ['Post', 'Delete', 'Put', 'Patch'],
              message: 'Declare write routes with PostRoute/DeleteRoute from src/common/write-routes.ts.',
            },
          ],
        },
      ],
    },
  },
  {
    // Tests and the benchmark read untyped JSON (HTTP answers via supertest, database rows, result
    // files): `any` is their input, and the assertions check its shape at run time.
    files: ['test/**/*.ts', 'src/**/*.spec.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
  {
    // Plain CommonJS scripts run by node.
    files: ['**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        console: 'readonly',
        __dirname: 'readonly',
      },
    },
  },
);
