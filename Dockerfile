# The trailwatch detector: `node src/cli/main.ts run` on Node 24, which runs the TypeScript
# sources directly (type stripping), so there is no build step. The Node version is the one
# scripts/with-node.sh fetches (test/stack/compose.test.ts keeps them equal).
FROM node:24.21.0-slim

ENV NODE_ENV=production
# kafkajs 2.2.4 sets a negative timer once per process (its issue #1751): the warning is noise.
ENV NODE_OPTIONS=--disable-warning=TimeoutNegativeWarning
# /metrics, /healthz and /readyz on every interface of the container (a published port reaches
# them); observe.port stays 9464 unless TRAILWATCH_OBSERVE__PORT says otherwise.
ENV TRAILWATCH_OBSERVE__HOST=0.0.0.0
WORKDIR /app

# Exactly the locked production dependencies; npm ci never rewrites package-lock.json.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY bin/ ./bin/
COPY schemas/ ./schemas/
COPY src/ ./src/

# The files stay root's; the detector runs as the image's unprivileged user and writes nothing here.
USER node
EXPOSE 9464
# /healthz answers 200 while the process loop is alive and not stuck (node's fetch: no curl here).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.TRAILWATCH_OBSERVE__PORT || 9464) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Connects to KAFKA_BROKERS and SCHEMA_REGISTRY_URL (see docker-compose.yml).
CMD ["node", "src/cli/main.ts", "run"]
