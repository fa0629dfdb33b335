import type { GroupSummary, PrivcommClient, SafetyState } from '@privcomm/client';
import { groupJson, type JsonObject, type Names } from './output.ts';

/**
 * `group info` (and the daemon's groupInfo): the group, with each member's safety number state,
 * so that a member who is not a contact can be verified too (`privcomm safety-number MEMBER`
 * takes an account id).
 */
export const groupInfoJson = async (
  client: PrivcommClient,
  group: GroupSummary,
  names: Names,
): Promise<JsonObject> => {
  const json = groupJson(group, names);
  const safety = new Map<string, SafetyState>();
  for (const { accountId } of group.members)
    if (accountId !== names.self) safety.set(accountId, await client.safetyState(accountId));
  const members = (json.members as JsonObject[]).map((member) => {
    const state = safety.get(member.accountId as string);
    return state === undefined ? member : { ...member, safety: state };
  });
  return { ...json, members };
};

const SAFETY_TEXT: Record<SafetyState, string> = {
  verified: 'verified',
  'not-verified': 'not verified',
  changed: 'safety number CHANGED',
};

/** The text form: one line per member, with its safety state, and how to see a number. */
export const groupInfoText = (group: GroupSummary, json: JsonObject, names: Names): string[] => {
  const members = json.members as { accountId: string; admin: boolean; safety?: SafetyState }[];
  const lines = [
    `${group.title}  (version ${group.version})  id ${group.groupId}`,
    ...members.map(
      (m) =>
        `  ${names.label(m.accountId)}${m.admin ? '  admin' : ''}${m.safety ? `  ${SAFETY_TEXT[m.safety]}` : ''}`,
    ),
  ];
  if (!group.member) lines.push('You are no longer a member.');
  // How to compare a number, with the member who needs it most: changed, else not verified.
  const next =
    members.find((m) => m.safety === 'changed') ?? members.find((m) => m.safety === 'not-verified');
  if (next)
    lines.push(
      `Compare a safety number with: privcomm safety-number ${names.contact(next.accountId) ?? next.accountId}`,
    );
  return lines;
};
