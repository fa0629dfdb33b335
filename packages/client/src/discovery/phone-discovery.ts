import {
  DiscoveryEvaluateResponseSchema,
  DiscoveryLookupResponseSchema,
  DiscoveryStatusSchema,
  isAccountId,
  MAX_DISCOVERY_EVALUATIONS,
  type AccountId,
  type DiscoveryEvaluateResponse,
  type DiscoveryLookupResponse,
  type DiscoveryStatus,
} from '@privcomm/wire';
import { fromBase64, toBase64 } from '../bytes.ts';
import { ClientError } from '../errors.ts';
import type { RelayApi } from '../relay-api.ts';
import { blindNumber, discoveryToken, type RandomBytes } from './oprf.ts';
import type { E164 } from './phone-number.ts';

export interface PhoneDiscoveryDeps {
  readonly api: RelayApi;
  readonly randomBytes: RandomBytes;
}

/** A number's tokens, one per key the relay evaluated with (current first). */
interface NumberTokens {
  readonly number: E164;
  readonly tokens: { keyVersion: number; token: string }[];
}

/**
 * Finding accounts by phone number, and being found (docs/protocol.md, "Discovery"). Numbers are
 * normalised by the caller (normalizePhoneNumber) and never leave the device: the relay sees
 * blinded elements and tokens only. Platform-neutral, so the CLI and the Android app share it.
 */
export class PhoneDiscovery {
  constructor(private readonly deps: PhoneDiscoveryDeps) {}

  private notARelay(): ClientError {
    return new ClientError(
      'NOT_A_RELAY',
      `the server at ${this.deps.api.transport.relayUrl} answered the discovery request in an unexpected format`,
    );
  }

  /** Blinds the numbers, has the relay evaluate them, and derives their tokens (≤100 numbers). */
  private async tokens(numbers: readonly E164[]): Promise<NumberTokens[]> {
    const blinded = numbers.map((number) => blindNumber(number, this.deps.randomBytes));
    const { api } = this.deps;
    const response = api.expect<DiscoveryEvaluateResponse>(
      await api.call('POST', '/v1/discovery/evaluate', {
        blinded: blinded.map((item) => toBase64(item.blinded)),
      }),
      200,
      DiscoveryEvaluateResponseSchema,
    );
    if (response.evaluations.some((evaluation) => evaluation.evaluated.length !== blinded.length)) {
      throw this.notARelay();
    }
    return blinded.map((item, index) => ({
      number: item.number,
      tokens: response.evaluations.map((evaluation) => {
        try {
          const evaluated = fromBase64(evaluation.evaluated[index] as string);
          return {
            keyVersion: evaluation.keyVersion,
            token: toBase64(discoveryToken(item, evaluated)),
          };
        } catch {
          throw this.notARelay();
        }
      }),
    }));
  }

  /**
   * The accounts that published each number (none: not on this relay, or not findable). Several
   * accounts may claim one number: the relay does not verify numbers, so callers should let the
   * person choose, and compare safety numbers. Costs quota per number (429 RATE_LIMITED beyond).
   */
  async lookup(numbers: readonly E164[]): Promise<Map<E164, AccountId[]>> {
    const unique = [...new Set(numbers)];
    const found = new Map<E164, AccountId[]>(unique.map((number) => [number, []]));
    for (let start = 0; start < unique.length; start += MAX_DISCOVERY_EVALUATIONS) {
      const batch = await this.tokens(unique.slice(start, start + MAX_DISCOVERY_EVALUATIONS));
      const numberOf = new Map<string, E164>();
      for (const item of batch)
        for (const { token } of item.tokens) numberOf.set(token, item.number);
      const { api } = this.deps;
      const response = api.expect<DiscoveryLookupResponse>(
        await api.call('POST', '/v1/discovery/lookup', { tokens: [...numberOf.keys()] }),
        200,
        DiscoveryLookupResponseSchema,
      );
      for (const match of response.matches) {
        const number = numberOf.get(match.token);
        if (number === undefined || !isAccountId(match.accountId)) throw this.notARelay();
        const accounts = found.get(number) as AccountId[];
        if (!accounts.includes(match.accountId)) accounts.push(match.accountId);
      }
    }
    return found;
  }

  /**
   * Publishes this account's number (as its token under the current key): others can then find
   * it. Replaces a number published before. Returns the key version published under.
   */
  async publish(number: E164): Promise<number> {
    const { api } = this.deps;
    // A rotation between the evaluation and the publication: once more, with the new key.
    for (let attempt = 0; ; attempt += 1) {
      const [item] = await this.tokens([number]);
      const current = item?.tokens[0];
      if (!current) throw this.notARelay();
      const response = await api.call('PUT', '/v1/discovery/token', current);
      if (response.status === 409 && attempt === 0) continue;
      api.expect(response, 204);
      return current.keyVersion;
    }
  }

  /** Removes this account's published number: nobody finds it by number any more. */
  async remove(): Promise<void> {
    const { api } = this.deps;
    api.expect(await api.call('DELETE', '/v1/discovery/token'), 204);
  }

  /** The relay's current key version and that of this account's published token. */
  async status(): Promise<DiscoveryStatus> {
    const { api } = this.deps;
    return api.expect(await api.call('GET', '/v1/discovery/token'), 200, DiscoveryStatusSchema);
  }

  /**
   * After a key rotation: publishes `number` again under the new key if this account's token is
   * under an older one (and nothing if it published none). Call it now and then (the CLI does
   * with every discovery command); the relay keeps the old key for a grace period (14 days by
   * default), during which the old token is still found. Returns whether it published.
   */
  async refresh(number: E164): Promise<boolean> {
    const status = await this.status();
    if (status.publishedKeyVersion === null || status.publishedKeyVersion === status.keyVersion) {
      return false;
    }
    await this.publish(number);
    return true;
  }
}
