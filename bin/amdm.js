#!/usr/bin/env node
// The `amdm` command. The CLI is TypeScript run through tsx, so a fresh clone needs no
// build step; tsx's loader is registered here before the entry module is imported.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
