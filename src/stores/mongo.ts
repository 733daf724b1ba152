/** MongoDB access: one client per distinct server URL; handlers get a tenant's `Db`, never the client. */
import { MongoClient, type Db } from 'mongodb';

export class MongoClients {
  readonly #clients = new Map<string, MongoClient>();

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
    return this.client(url).db(name);
  }

  async closeAll(): Promise<void> {
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.all(clients.map((c) => c.close()));
  }
}
