# The trailwatch detector: `node src/cli/main.ts run` on Node 24, which runs the TypeScript
# sources directly (type stripping), so there is no build step.
FROM node:24-slim

ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY bin/ ./bin/
COPY schemas/ ./schemas/
COPY src/ ./src/

USER node
# Connects to KAFKA_BROKERS and SCHEMA_REGISTRY_URL (see docker-compose.yml).
CMD ["node", "src/cli/main.ts", "run"]
