# The privcomm relay as a container image. Build from the repository root:
#   docker build -t privcomm-relay .
# deploy/docker-compose.yml builds and runs it with PostgreSQL and coturn (docs/operations.md).
#
# Stage 1 compiles the relay, TypeScript and every dependency, into plain JavaScript
# (packages/server/scripts/bundle.js). Stage 2 holds only Node, that bundle and the SQL
# migrations (and, beside the bundle, the optional native bufferutil that ws loads if it is there):
# no TypeScript compiler, no other node_modules, no package manager run at start. It runs as
# the unprivileged `node` user and needs DATABASE_URL (the embedded PostgreSQL is not in the image).

ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# The manifests first, so that the dependency layer is rebuilt only when they change. npm ci needs
# every workspace's package.json; only the relay's dependencies are installed.
COPY package.json package-lock.json ./
COPY packages/wire/package.json packages/wire/
COPY packages/server/package.json packages/server/
COPY packages/client/package.json packages/client/
COPY packages/engine-node/package.json packages/engine-node/
COPY packages/engine-android/package.json packages/engine-android/
COPY apps/cli/package.json apps/cli/
RUN npm ci --workspace @privcomm/server --ignore-scripts --no-audit --no-fund
COPY tsconfig.base.json ./
COPY packages/wire packages/wire
COPY packages/server packages/server
RUN node packages/server/scripts/bundle.js

FROM ${NODE_IMAGE}
WORKDIR /app
COPY --from=build /src/packages/server/dist ./dist
COPY --from=build /src/packages/server/migrations ./migrations
# A container is reached through its published port: listen on every interface inside it.
ENV HOST=0.0.0.0 \
    PORT=8000
USER node
EXPOSE 8000
# Ready means the database answers too; Node's own fetch, since the image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM (docker stop) stops it cleanly: node is PID 1 and the relay handles the signal.
STOPSIGNAL SIGTERM
CMD ["node", "--max-semi-space-size=32", "dist/bin/main.mjs"]
