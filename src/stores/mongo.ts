/** MongoDB access: one client per distinct server URL; handlers get a tenant's `Db`, never the client. */
import { MongoClient, type Db } from 'mongodb';

export class MongoClients {
  readonly #clients = new Map<string, MongoClient>();
  // MongoClient.db() builds a new Db each call, which shows in per-job profiles; keep one per name.
  readonly #dbs = new Map<string, Db>();

  client(url: string): MongoClient {
    let client = this.#clients.get(url);
    if (!client) {
      // The driver connects lazily on first use and reconnects by itself after a server restart.
      client = new MongoClient(url, { serverSelectionTimeoutMS: 10_000, maxPoolSize: 20 });
      this.#clients.set(url, client);
    }
    return client;
  }

  db(url: string, name: string): Db {
    const key = `${url}\u0000${name}`;
    let db = this.#dbs.get(key);
    if (!db) {
      db = this.client(url).db(name);
      this.#dbs.set(key, db);
    }
    return db;
  }

  async closeAll(): Promise<void> {
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    this.#dbs.clear();
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Whether a collection (or view) of this name exists. */
export async function collectionExists(db: Db, name: string): Promise<boolean> {
  return (await db.listCollections({ name }, { nameOnly: true }).toArray()).length > 0;
}
