/**
 * Board authentication: basic auth or a bearer token from the environment, compared in constant time.
 * Required whenever the board listens beyond loopback; it refuses to start there without credentials.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';

export interface BoardCredentials {
  user?: string | undefined;
  password?: string | undefined;
  token?: string | undefined;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function hasCredentials(c: BoardCredentials): boolean {
  return Boolean((c.user && c.password) || c.token);
}

/** Hash both sides first: timingSafeEqual needs equal lengths, and this hides the secret's length. */
function safeEqual(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

export function checkAuthorization(header: string | undefined, c: BoardCredentials): boolean {
  if (!header) return false;
  const [scheme, value = ''] = header.split(' ', 2);
  if (scheme?.toLowerCase() === 'bearer' && c.token) return safeEqual(value, c.token);
  if (scheme?.toLowerCase() === 'basic' && c.user && c.password) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    // Evaluate both comparisons, so that a wrong user costs as long as a wrong password.
    const userOk = safeEqual(decoded.slice(0, colon), c.user);
    const passwordOk = safeEqual(decoded.slice(colon + 1), c.password);
    return userOk && passwordOk;
  }
  return false;
}

export function requireAuth(c: BoardCredentials): RequestHandler {
  return (req, res, next) => {
    if (checkAuthorization(req.headers.authorization, c)) return next();
    res
      .set('WWW-Authenticate', 'Basic realm="dbfleet", charset="UTF-8"')
      .status(401)
      .json({ error: 'authentication required' });
  };
}
