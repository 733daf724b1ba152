/**
 * What a board user may do. Bull Board can also add jobs, rewrite a job's data, empty, clean and
 * obliterate queues, change priorities, delays, rate limits and concurrency. Through those a board
 * user could enqueue a job whose envelope (payload digest, requester) was never built by the
 * client, or destroy jobs in bulk without a trace in the audit log. So the board allows reads and
 * the operator's routine actions on existing jobs and queues; anything else goes through the CLI,
 * which validates the payload and records who asked.
 *
 * It is an allow-list of Bull Board's own route patterns: a mutating route a later Bull Board adds
 * is refused until it is listed here.
 */
import { Router, type RequestHandler } from 'express';
import type { BoardHooks } from '@bull-board/api/typings/app';
import { isLoopback } from './auth.ts';

export interface BoardAction {
  method: 'put';
  /** Bull Board's route pattern, relative to the board's base path. */
  route: string;
}

/**
 * The mutating routes the board serves. The bulk forms of retry and promote are the same actions on
 * every failed (completed, delayed) job of one queue, and keep each job's payload and requester:
 * retrying what an outage failed is the operator's daily use of the board. Removing in bulk (clean,
 * empty, obliterate) is refused: it cannot be undone.
 */
export const BOARD_ACTIONS: readonly BoardAction[] = [
  { method: 'put', route: '/api/queues/:queueName/:jobId/retry' },
  { method: 'put', route: '/api/queues/:queueName/retry/:queueStatus' }, // every job of a state
  { method: 'put', route: '/api/queues/:queueName/:jobId/clean' }, // remove one job
  { method: 'put', route: '/api/queues/:queueName/:jobId/promote' },
  { method: 'put', route: '/api/queues/:queueName/promote' }, // every delayed job
  { method: 'put', route: '/api/queues/:queueName/pause' },
  { method: 'put', route: '/api/queues/:queueName/resume' },
  { method: 'put', route: '/api/queues/pause' }, // every queue
  { method: 'put', route: '/api/queues/resume' },
];

const READ_METHODS = new Set(['GET', 'HEAD']);

const ALLOWED_HINT =
  'the board may only retry, remove and promote jobs and pause and resume queues; ' +
  'use the dbfleet CLI for anything else (dbfleet enqueue validates the payload and records who asked)';

function notAllowed(what: string): string {
  return `${what} is not allowed from the board`;
}

/** A route Bull Board serves (method lower-case, as in its route table) that the board allows. */
export function isAllowedBoardRoute(method: string, route: string): boolean {
  if (READ_METHODS.has(method.toUpperCase())) return true;
  return BOARD_ACTIONS.some((a) => a.method === method.toLowerCase() && a.route === route);
}

/**
 * Mounted in front of Bull Board's router, on the same path. An Express router itself, so a request
 * path matches the allowed patterns exactly as Bull Board's Express router would match it (case,
 * trailing slash, encoding).
 */
export function boardActionGuard(
  jobState: (queue: string, jobId: string) => Promise<string | undefined>,
): Router {
  const guard = Router();
  const leaveGuard: RequestHandler = (_req, _res, next) => next('router');
  guard.use((req, _res, next) => (READ_METHODS.has(req.method) ? next('router') : next()));
  // Only failed jobs are retried from the board: a completed job's run is over, and its checkpoints
  // may have expired with its retention, so running it again would start the work over.
  const onlyFailed: RequestHandler = (req, res, next) => {
    const { queueName, jobId, queueStatus } = req.params as Record<string, string>;
    const state = queueStatus !== undefined ? Promise.resolve(queueStatus) : jobState(queueName!, jobId!);
    state.then(
      (s) =>
        s === 'failed'
          ? next('router')
          : res.status(403).json({
              error: `retrying ${s ?? 'this'} jobs is not allowed from the board`,
              message: 'only failed jobs are retried; a finished run is enqueued anew (dbfleet enqueue)',
            }),
      next,
    );
  };
  guard.put('/api/queues/:queueName/:jobId/retry', onlyFailed);
  guard.put('/api/queues/:queueName/retry/:queueStatus', onlyFailed);
  for (const action of BOARD_ACTIONS) guard[action.method](action.route, leaveGuard);
  guard.use((req, res) => {
    res.status(403).json({
      error: notAllowed(`${req.method} ${req.originalUrl.split('?')[0]}`),
      message: ALLOWED_HINT,
    });
  });
  return guard;
}

/**
 * The same allow-list, checked again against the route Bull Board actually dispatches to: allowed
 * patterns overlap refused ones (PUT /api/queues/q/clean/clean is both "remove job clean" and "clean
 * every job in state clean", and Bull Board matches the latter first). The guard alone would let it
 * through.
 */
export const boardActionHooks: BoardHooks = {
  before: ({ method, route }) =>
    isAllowedBoardRoute(method, route)
      ? { allow: true }
      : {
          allow: false,
          status: 403,
          message: `${notAllowed(`${method.toUpperCase()} ${route}`)}: ${ALLOWED_HINT}`,
        },
};

/** The host name in a Host header, without port or IPv6 brackets; undefined when malformed. */
export function hostName(header: string): string | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::\d{1,5})?$/.exec(header);
  const name = match?.[1] ?? match?.[2];
  return name?.toLowerCase();
}

/**
 * Against DNS rebinding: a web page on evil.example can have its name re-resolve to 127.0.0.1 and
 * then read and drive a board that listens on loopback without credentials, as same-origin requests.
 * Its requests still carry `Host: evil.example`, so only loopback host names are served.
 */
export function requireLoopbackHost(): RequestHandler {
  return (req, res, next) => {
    const name = req.headers.host === undefined ? undefined : hostName(req.headers.host);
    if (name !== undefined && isLoopback(name)) return next();
    res.status(403).json({
      error: `Host ${JSON.stringify(req.headers.host ?? '')} is not a loopback name`,
      message:
        'without credentials the board answers only requests addressed to localhost, 127.x.y.z or [::1]; ' +
        'set DBFLEET_BOARD_USER and DBFLEET_BOARD_PASSWORD, or DBFLEET_BOARD_TOKEN, to serve other names',
    });
  };
}
