// Evaluates flags through the real JavaScript OpenFeature server SDK and its
// OFREP provider, against a running `backout flags serve`.
//
// Usage: node ofrep-client.cjs BASE_URL TOKEN < cases.json > results.json
// cases: [{flag, type: boolean|string|integer|float|object, default, context}]
// results: [{value, variant, reason, error}]
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');

async function main() {
  const [baseUrl, token] = process.argv.slice(2);
  const headers = token ? [['Authorization', `Bearer ${token}`]] : undefined;
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers }));
  const client = OpenFeature.getClient();
  const input = require('fs').readFileSync(0, 'utf8');
  const out = [];
  for (const c of JSON.parse(input)) {
    const method = {
      boolean: 'getBooleanDetails',
      string: 'getStringDetails',
      integer: 'getNumberDetails',
      float: 'getNumberDetails',
      object: 'getObjectDetails',
    }[c.type];
    const d = await client[method](c.flag, c.default, c.context || {});
    out.push({
      value: d.value,
      variant: d.variant ?? null,
      reason: d.reason,
      error: d.errorCode ?? null,
      metadata: d.flagMetadata ?? {},
    });
  }
  process.stdout.write(JSON.stringify(out));
  await OpenFeature.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
