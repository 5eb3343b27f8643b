// The client map: which clients (User-Agent components) call which resources, over the last
// `windowSeconds`; edge weight = requests per second, colour = share of errors. Counts live in
// one-second buckets so a window costs O(distinct edges), whatever the request rate.
import type { ApiRequest } from "./protocol";

/** Distinct resources and clients kept; the rest are folded into `other` (memory stays bounded). */
export const MAX_NODES = 40;
export const OTHER = "other";

export interface ClientMapEdge {
  client: string;
  resource: string;
  count: number;
  errors: number;
  /** Requests per second over the window. */
  rate: number;
  /** errors / count, 0..1. */
  errorRate: number;
}

export interface ClientMapSnapshot {
  clients: string[];
  resources: string[];
  edges: ClientMapEdge[];
  windowSeconds: number;
}

/** An error: 4xx/5xx, or no response at all. */
export function isError(request: ApiRequest): boolean {
  return typeof request.code !== "number" || request.code >= 400;
}

export function clientOf(request: ApiRequest): string {
  return request.component || request.user_agent || "unknown";
}

export function resourceOf(request: ApiRequest): string {
  if (request.resource) return request.subresource ? `${request.resource}/${request.subresource}` : request.resource;
  return request.path || "unknown";
}

interface Counts {
  count: number;
  errors: number;
}

export class ClientMap {
  private buckets = new Map<number, Map<string, Counts>>();
  private clients = new Set<string>();
  private resources = new Set<string>();

  constructor(readonly windowSeconds = 60) {}

  private bounded(set: Set<string>, name: string): string {
    if (set.has(name)) return name;
    if (set.size >= MAX_NODES) return OTHER;
    set.add(name);
    return name;
  }

  add(request: ApiRequest): void {
    const second = Math.floor(request.end_unix_nano / 1e9);
    const client = this.bounded(this.clients, clientOf(request));
    const resource = this.bounded(this.resources, resourceOf(request));
    const key = client + "\u0000" + resource;
    let bucket = this.buckets.get(second);
    if (!bucket) {
      bucket = new Map();
      this.buckets.set(second, bucket);
    }
    let counts = bucket.get(key);
    if (!counts) {
      counts = { count: 0, errors: 0 };
      bucket.set(key, counts);
    }
    counts.count++;
    if (isError(request)) counts.errors++;
  }

  /** Drops buckets that left the window, then sums what is in it. */
  snapshot(nowMs: number): ClientMapSnapshot {
    const nowSecond = Math.floor(nowMs / 1000);
    const oldest = nowSecond - this.windowSeconds + 1;
    const totals = new Map<string, Counts>();
    for (const [second, bucket] of this.buckets) {
      if (second < oldest) {
        this.buckets.delete(second);
        continue;
      }
      for (const [key, counts] of bucket) {
        const total = totals.get(key) ?? { count: 0, errors: 0 };
        total.count += counts.count;
        total.errors += counts.errors;
        totals.set(key, total);
      }
    }
    const edges: ClientMapEdge[] = [];
    const clients = new Set<string>();
    const resources = new Set<string>();
    for (const [key, { count, errors }] of totals) {
      const [client, resource] = key.split("\u0000");
      clients.add(client);
      resources.add(resource);
      edges.push({ client, resource, count, errors, rate: count / this.windowSeconds, errorRate: errors / count });
    }
    edges.sort((a, b) => b.count - a.count);
    return { clients: [...clients].sort(), resources: [...resources].sort(), edges, windowSeconds: this.windowSeconds };
  }

  clear(): void {
    this.buckets.clear();
    this.clients.clear();
    this.resources.clear();
  }
}
