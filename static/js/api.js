// The JSON API, the dashboard's only source of data.
import {tText} from "./i18n.js";

export class ApiError extends Error {
  constructor(status, body) {
    // The error in the page's language when the server sent its code, else the server's English.
    super((body && body.code ? tText(body, body.error) : body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function call(method, path, body, extraHeaders) {
  const options = {method, credentials: "same-origin", headers: {Accept: "application/json", ...extraHeaders}};
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok && !(method === "POST" && path.startsWith("/test"))) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const patch = (path, body) => call("PATCH", path, body);
export const del = (path) => call("DELETE", path);

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
