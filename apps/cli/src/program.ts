import { Command, CommanderError } from 'commander';
import { addAccountCommands } from './commands/account.ts';
import { addCallCommands } from './commands/calls.ts';
import { examples } from './commands/common.ts';
import { addContactCommands } from './commands/contacts.ts';
import { addDaemonCommand } from './commands/daemon.ts';
import { addDeviceCommands } from './commands/devices.ts';
import { addGroupCommands } from './commands/groups.ts';
import { addIdentityCommands } from './commands/identities.ts';
import { addListenCommand } from './commands/listen.ts';
import { addMessageCommands } from './commands/messages.ts';
import { addPhoneCommands } from './commands/phone.ts';
import { EXIT } from './errors.ts';
import { neutralise } from './output.ts';
import { RunContext, type Io } from './run-context.ts';

export type { Io } from './run-context.ts';
export { normalizeServer } from './commands/common.ts';

/** The command named by the arguments ("privcomm devices add"), for the help hint of an error. */
const commandPath = (program: Command, argv: readonly string[]): string[] => {
  const names = ['privcomm'];
  let current = program;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === '--server' || arg === '--profile') {
      i += 1;
      continue;
    }
    if (arg.startsWith('-')) continue;
    const next = current.commands.find((c) => c.name() === arg);
    if (!next) break;
    names.push(arg);
    current = next;
  }
  return names;
};

/** The `privcomm` command with its global options; the commands come from commands/. */
const buildProgram = (ctx: RunContext, argv: readonly string[]): Command => {
  const { io } = ctx;
  const program = new Command('privcomm')
    .description(
      'End-to-end encrypted messaging through a privcomm relay, for people and bots.\n' +
        'Each profile directory is one device of one account; the relay never sees your messages.',
    )
    .option(
      '--server <url>',
      'relay URL (env PRIVCOMM_SERVER); default: the relay the profile registered with, else http://localhost:8000',
    )
    .option('--profile <dir>', 'profile directory (env PRIVCOMM_PROFILE; default ~/.privcomm)')
    .option('--json', 'print results as JSON, one object per line, on stdout')
    .version('0.1.0', '--version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    // Inherited by every command added below: their help lists --server, --profile and --json.
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) =>
        write(
          `privcomm: ${neutralise(
            text
              .replace(/^error: /, '')
              .replace(/\s*\n\s*/g, ' ')
              .trim(),
          )} (see "${[...commandPath(program, argv), '--help'].join(' ')}")\n`,
        ),
    })
    .addHelpText(
      'after',
      `\nExit codes: 0 success, 1 failure (one line on stderr says what to do), 2 usage error.` +
        examples(
          'privcomm --profile /tmp/alice register',
          'privcomm --profile /tmp/alice contacts add bob 2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11',
          'privcomm --profile /tmp/alice send bob "hello"',
          'privcomm --profile /tmp/bob receive',
        ),
    );
  addAccountCommands(program, ctx);
  addContactCommands(program, ctx);
  addPhoneCommands(program, ctx);
  addMessageCommands(program, ctx);
  addGroupCommands(program, ctx);
  addListenCommand(program, ctx);
  addDaemonCommand(program, ctx);
  addCallCommands(program, ctx);
  addIdentityCommands(program, ctx);
  addDeviceCommands(program, ctx);
  return program;
};

/** Runs the program; resolves with the exit code. */
export const run = async (argv: readonly string[], io: Io): Promise<number> => {
  const ctx = new RunContext(io);
  const program = buildProgram(ctx, argv);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version: exit 0, also for "privcomm help [COMMAND]" (commander.help with exit
      // code 0). Help shown because no command was given (exit code 1): a usage error.
      if (
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        (error.code === 'commander.help' && error.exitCode === 0)
      )
        return EXIT.OK;
      return EXIT.USAGE;
    }
    const described = ctx.describe(error);
    ctx.out.error(described.message);
    if (io.env.PRIVCOMM_DEBUG && error instanceof Error && error.stack)
      io.stderr.write(`${error.stack}\n`);
    return described.exitCode;
  } finally {
    await ctx.close();
  }
};
