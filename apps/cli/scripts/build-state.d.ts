/** Types of build-state.js (plain JavaScript, so that it runs before anything is compiled). */
export declare const SOURCE_DIRS: readonly string[];
export declare const BUILT_ENTRY: string;
export declare const isBuildFresh: (entry?: string, dirs?: readonly string[]) => boolean;
