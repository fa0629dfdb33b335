import { ClientError, type PrivcommClient, type Profile } from '@privcomm/client';
import { isAccountId } from '@privcomm/wire';
import { groupInfoJson } from '../group-info.ts';
import { groupJson, groupSentJson, messageJson, Names } from '../output.ts';
import { param, RPC_ERRORS, RpcError, type Method, type Params } from './json-rpc.ts';

/**
 * The daemon's methods: the messaging commands of the CLI, with the same rules, and results
 * shaped like their --json output (apps/cli/README.md lists them). Names are camelCase, as
 * JSON-RPC clients (and signal-cli's users) expect.
 */

export interface MethodDeps {
  readonly client: PrivcommClient;
  readonly self: Profile;
  readonly server: string;
  readonly profileDir: string;
  /** Whether the daemon is connected to the relay now. */
  readonly connected: () => boolean;
}

const MAX_TIMER_SECONDS = 365 * 24 * 60 * 60;

const appError = (message: string, code: string): RpcError =>
  new RpcError(RPC_ERRORS.APPLICATION, message, { code });

export const daemonMethods = (deps: MethodDeps): Record<string, Method> => {
  const { client, self } = deps;
  const names = async () =>
    new Names(self.accountId, await client.contacts(), await client.groups());
  /** A contact name or an account id, as in the commands (`recipient`, `contact`). */
  const recipient = async (params: Params, name = 'recipient') => {
    const to = await client.resolve(param.string(params, name));
    return to;
  };
  /** `group` (a title or id) in place of `recipient`, as `--group` in the commands. */
  const group = async (params: Params): Promise<string | undefined> => {
    if (params.group === undefined) return undefined;
    if (params.recipient !== undefined)
      throw new RpcError(
        RPC_ERRORS.INVALID_PARAMS,
        'give params.recipient or params.group, not both',
      );
    return client.resolveGroup(param.string(params, 'group'));
  };

  return {
    whoami: async (params) => {
      param.only(params);
      return {
        accountId: self.accountId,
        deviceId: self.deviceId,
        server: deps.server,
        profile: deps.profileDir,
        connected: deps.connected(),
      };
    },

    send: async (params) => {
      param.only(params, 'recipient', 'group', 'message');
      const text = param.string(params, 'message');
      if (text.trim() === '')
        throw new RpcError(RPC_ERRORS.INVALID_PARAMS, 'params.message is empty');
      const groupId = await group(params);
      if (groupId !== undefined) {
        // Members left out (a verified safety number that changed) show as "failed" in
        // recipients; `retry` sends to them once the change is accepted.
        const message = await client.sendGroupText(groupId, text);
        return groupSentJson(message, (await client.groupInfo(groupId)).title);
      }
      const to = await recipient(params);
      if (to === self.accountId) throw appError('you cannot send a message to yourself', 'SELF');
      await client.flushOutbox().catch(() => undefined);
      try {
        const message = await client.sendText(to, text);
        const contact = (await names()).contact(to);
        return {
          type: 'sent',
          id: message.id,
          to,
          ...(contact === undefined ? {} : { contact }),
          sentAt: message.sentAt,
          status: message.status,
        };
      } catch (error) {
        if (!(error instanceof ClientError) || error.code !== 'RELAY_UNREACHABLE') throw error;
        // Kept in the outbox and sent once the relay is back (the daemon reconnects by itself).
        const kept = (await client.history(to)).findLast(
          (m) => m.direction === 'out' && m.status === 'sending' && m.text === text,
        );
        throw new RpcError(
          RPC_ERRORS.APPLICATION,
          `${error.message}; the message is kept and will be sent once the relay is reached: do not send it again`,
          { code: 'RELAY_UNREACHABLE', ...(kept ? { id: kept.id } : {}), kept: true },
        );
      }
    },

    sendTyping: async (params) => {
      param.only(params, 'recipient', 'stop');
      const stop = param.boolean(params, 'stop', false);
      const to = await recipient(params);
      await client.sendTyping(to, !stop);
      return { type: 'typing', to, typing: !stop };
    },

    markRead: async (params) => {
      param.only(params, 'recipient', 'group');
      const groupId = await group(params);
      if (groupId !== undefined)
        return { conversation: groupId, read: await client.markGroupRead(groupId) };
      const conversation = await recipient(params);
      return { conversation, read: await client.markRead(conversation) };
    },

    history: async (params) => {
      param.only(params, 'recipient', 'group');
      const conversation = (await group(params)) ?? (await recipient(params));
      const labels = await names();
      return (await client.history(conversation)).map((m) => messageJson(m, labels));
    },

    retry: async (params) => {
      param.only(params, 'recipient', 'group', 'messageId');
      const messageId = param.string(params, 'messageId');
      const conversation = (await group(params)) ?? (await recipient(params));
      const message = await client.retryMessage(conversation, messageId);
      return { ...messageJson(message, await names()), type: 'retried' };
    },

    listGroups: async (params) => {
      param.only(params);
      const labels = await names();
      return (await client.groups()).map((g) => groupJson(g, labels));
    },

    groupInfo: async (params) => {
      param.only(params, 'group');
      const info = await client.groupInfo(param.string(params, 'group'));
      return groupInfoJson(client, info, await names());
    },

    listContacts: async (params) => {
      param.only(params);
      const result = [];
      for (const contact of await client.contacts()) {
        const identity = await client.identity(contact.accountId);
        result.push({
          name: contact.name,
          accountId: contact.accountId,
          expireSeconds: contact.expireSeconds,
          verified: identity?.verified ?? false,
          identityChanged: identity?.changed ?? false,
        });
      }
      return result;
    },

    addContact: async (params) => {
      param.only(params, 'name', 'accountId');
      const name = param.string(params, 'name').trim();
      const id = param.string(params, 'accountId').trim().toLowerCase();
      if (name === '') throw new RpcError(RPC_ERRORS.INVALID_PARAMS, 'params.name is empty');
      if (isAccountId(name.toLowerCase()))
        throw new RpcError(RPC_ERRORS.INVALID_PARAMS, 'a contact name cannot be an account id');
      if (!isAccountId(id))
        throw new RpcError(RPC_ERRORS.INVALID_PARAMS, 'params.accountId is not an account id');
      if (id === self.accountId) throw appError('that is your own account id', 'SELF');
      const clash = (await client.contacts()).find((c) => c.name === name && c.accountId !== id);
      if (clash)
        throw appError(
          `a contact named "${name}" already exists (${clash.accountId})`,
          'CONTACT_EXISTS',
        );
      const contact = await client.addContact(name, id);
      return {
        name: contact.name,
        accountId: contact.accountId,
        expireSeconds: contact.expireSeconds,
      };
    },

    deleteMessage: async (params) => {
      param.only(params, 'recipient', 'messageId');
      const messageId = param.string(params, 'messageId');
      const conversation = await recipient(params);
      const mine = (await client.history(conversation)).some(
        (m) => m.id === messageId && m.direction === 'out',
      );
      if (!mine)
        throw appError(`you sent no message with id ${messageId} there`, 'UNKNOWN_MESSAGE');
      await client.deleteForEveryone(conversation, messageId);
      return { type: 'deleted', conversation, messageId };
    },

    setDisappearing: async (params) => {
      param.only(params, 'recipient', 'expireSeconds');
      const seconds = param.integer(params, 'expireSeconds', 0, MAX_TIMER_SECONDS);
      const conversation = await recipient(params);
      await client.setDisappearing(conversation, seconds);
      return { type: 'timer', conversation, expireSeconds: seconds };
    },

    listDevices: async (params) => {
      param.only(params);
      const { devices } = await client.devices();
      return devices.map((device) => ({
        deviceId: device.deviceId,
        createdOn: device.createdOn,
        lastSeenOn: device.lastSeenOn,
        current: device.deviceId === self.deviceId,
      }));
    },
  };
};
