// The floor under the gateway's hop: a plain JavaScript worker that forwards every request to the
// origin and checks nothing (bench/gateway.py measures it beside edge-auth's gateway).
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.ORIGIN_URL + url.pathname + url.search, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      redirect: "manual",
    });
  },
};
