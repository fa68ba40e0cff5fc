// The providers zaphook speaks, as the server's registry describes them (GET /api/providers), fetched once.
import {get} from "./api.js";

let loading = null;

export function providers() {
  if (!loading) loading = get("/api/providers").catch((error) => { loading = null; throw error; });
  return loading;
}
