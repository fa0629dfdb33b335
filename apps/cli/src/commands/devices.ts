import type { Command } from 'commander';
import type { DeviceId } from '@privcomm/wire';
import { CliError } from '../errors.ts';
import type { RunContext } from '../run-context.ts';
import { examples, parseDeviceId, sleep } from './common.ts';
/** How long `devices add` waits for the new device to show up in the device list. */
const DEVICE_JOIN_WAIT_MS = 30_000;

/** devices list, add and remove, and link: the devices of an account. */
export const addDeviceCommands = (program: Command, ctx: RunContext): void => {
  const devices = program
    .command('devices')
    .summary('list, add or remove devices')
    .description("list, add or remove this account's devices (at most 6)")
    .addHelpText(
      'after',
      examples(
        'privcomm devices list',
        'privcomm devices add <LINK_CODE>',
        'privcomm devices remove 2',
      ),
    );

  devices
    .command('list')
    .description("list the account's devices")
    .addHelpText('after', examples('privcomm devices list --json'))
    .action(async (_o: unknown, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      const { devices: list } = await client.devices();
      for (const device of list) {
        const current = device.deviceId === self.deviceId;
        ctx.out.result(
          {
            deviceId: device.deviceId,
            createdOn: device.createdOn,
            lastSeenOn: device.lastSeenOn,
            current,
          },
          `device ${device.deviceId}${device.deviceId === 1 ? ' (primary)' : ''}${current ? ' (this one)' : ''}  created ${device.createdOn}, last seen ${device.lastSeenOn}`,
        );
      }
    });

  devices
    .command('add')
    .description(
      'on the primary device: link a new device, with the code that "privcomm link" shows on it',
    )
    .argument('<linkCode>', 'the code printed by "privcomm link" on the new device')
    .addHelpText('after', examples('privcomm devices add Qm9v...XyZ.BXk3...'))
    .action(async (linkCode: string, _o: unknown, command: Command) => {
      const { client } = await ctx.openAccount(command);
      const before = new Set((await client.devices()).devices.map((d) => d.deviceId));
      await client.addDevice(linkCode);
      ctx.out.status('Sent the account to the new device; waiting for it to join…');
      const deadline = Date.now() + DEVICE_JOIN_WAIT_MS;
      while (Date.now() < deadline) {
        const added = (await client.devices()).devices.find((d) => !before.has(d.deviceId));
        if (added) {
          ctx.out.result(
            { type: 'device-added', deviceId: added.deviceId },
            `Linked device ${added.deviceId}.`,
          );
          return;
        }
        await sleep(500);
      }
      ctx.out.result(
        { type: 'device-pending' },
        'The new device has not joined yet; check "privcomm devices list" in a moment.',
      );
    });

  devices
    .command('remove')
    .description('remove a device from the account (it can no longer send or receive)')
    .argument('<id>', 'the device id (see "privcomm devices list")', parseDeviceId)
    .addHelpText('after', examples('privcomm devices remove 2'))
    .action(async (deviceId: DeviceId, _o: unknown, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      if (deviceId === self.deviceId)
        throw new CliError(
          'that is this device; remove it from another device of the account',
          'SELF',
        );
      await client.removeDevice(deviceId);
      ctx.out.result({ type: 'device-removed', deviceId }, `Removed device ${deviceId}.`);
    });

  program
    .command('link')
    .summary('join an existing account as a new device')
    .description(
      'on a new device: join an existing account. Prints a link code to enter on the primary device, waits, then prints the new device id',
    )
    .addHelpText(
      'after',
      examples(
        'privcomm --profile /tmp/alice-laptop link',
        '# then, on the primary: privcomm --profile /tmp/alice devices add <LINK_CODE>',
      ),
    )
    .action(async (_o: unknown, command: Command) => {
      const { profile, server } = await ctx.joinAccount(command, async (opened) => {
        const { linkCode, done } = await opened.client.startLink();
        ctx.out.result({ type: 'link-code', linkCode }, [
          `Link code: ${linkCode}`,
          `On your primary device, run: privcomm devices add ${linkCode}`,
        ]);
        ctx.out.status('Waiting for the primary device (up to 10 minutes; Ctrl-C cancels)…');
        // Ctrl-C ends the wait as a failure, so that the new profile's keys are removed.
        let cancel: (error: Error) => void = () => undefined;
        const cancelled = new Promise<never>((_resolve, reject) => (cancel = reject));
        done.catch(() => undefined);
        const removeSignal = ctx.io.onSignal(() =>
          cancel(
            new CliError(
              'linking cancelled: nothing was kept in this profile; run "privcomm link" again',
              'LINK_CANCELLED',
            ),
          ),
        );
        try {
          return { ...opened, profile: await Promise.race([done, cancelled]) };
        } finally {
          removeSignal();
        }
      });
      ctx.out.result(
        { type: 'linked', accountId: profile.accountId, deviceId: profile.deviceId, server },
        `Linked: this profile is device ${profile.deviceId} of account ${profile.accountId}. Your contacts come with the next "privcomm receive", once another of your devices has been online.`,
      );
    });
};
