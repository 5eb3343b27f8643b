// What a shared link carries: the filter and the Jaeger base URL live in the query string.

export interface ViewParams {
  filter: string;
  jaeger: string | null;
}

export function readViewParams(search: string): ViewParams {
  const params = new URLSearchParams(search);
  return { filter: params.get("filter") ?? "", jaeger: params.get("jaeger") };
}

/** The same URL with `filter` set (or removed when empty); other parameters are kept. */
export function withFilter(href: string, filter: string): string {
  const url = new URL(href);
  if (filter === "") url.searchParams.delete("filter");
  else url.searchParams.set("filter", filter);
  return url.pathname + url.search + url.hash;
}
