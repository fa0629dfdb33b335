import { Notice } from '../ui/components.tsx';

/** What a changed safety number means and what to do, in one place for chat and contact. */
export const identityWarningText = (name: string): string =>
  `${name}'s safety number has changed. This happens when they reinstall privcomm or move to a new phone, but it can also mean someone is intercepting your messages. Compare the new safety number with ${name} in person or on a call you trust before you accept it. Until then, nothing you write is sent to the new key.`;

export const IdentityWarning = ({ name }: { name: string }) => (
  <Notice kind="warning" text={identityWarningText(name)} />
);
