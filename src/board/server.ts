/** `dbfleet board`: listens, refusing to start beyond loopback without credentials. */
import type { Server } from 'node:http';
import type { FleetDeps } from '../runtime/deps.ts';
import { createBoard, type Board } from './app.ts';
import { hasCredentials, isLoopback, type BoardCredentials } from './auth.ts';

export interface RunningBoard {
  board: Board;
  server: Server;
  url: string;
  close(): Promise<void>;
}

export function boardCredentials(deps: FleetDeps): BoardCredentials {
  return {
    user: deps.env.DBFLEET_BOARD_USER,
    password: deps.env.DBFLEET_BOARD_PASSWORD,
    token: deps.env.DBFLEET_BOARD_TOKEN,
  };
}

export async function startBoard(deps: FleetDeps, host: string, port: number): Promise<RunningBoard> {
  const credentials = boardCredentials(deps);
  if (!isLoopback(host) && !hasCredentials(credentials)) {
    throw new Error(
      `refusing to serve the board on ${host} without credentials: set DBFLEET_BOARD_USER and DBFLEET_BOARD_PASSWORD, or DBFLEET_BOARD_TOKEN`,
    );
  }
  const board = createBoard(deps, { credentials: hasCredentials(credentials) ? credentials : undefined });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = board.app.listen(port, host, () => resolve(s));
    s.once('error', reject);
  });
  const address = server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    board,
    server,
    url: `http://${shownHost}:${actualPort}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await board.close();
    },
  };
}
