# The fleet's image: Node 24 runs the TypeScript sources directly (type stripping), no build step.
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY stubs ./stubs
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund
COPY queues ./queues
COPY workers ./workers
COPY src ./src
COPY demo ./demo
COPY migrations ./migrations
COPY dbfleet.config.ts ./
COPY bin ./bin
USER node
ENTRYPOINT ["bin/dbfleet"]
CMD ["worker"]
