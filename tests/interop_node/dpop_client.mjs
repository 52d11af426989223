// A third-party DPoP client for tests/test_dpop_interop.py: openid-client 6 discovers the
// authorization server (RFC 8414), gets a client-credentials token bound to a fresh key pair
// (RFC 9449 §5, handling use_dpop_nonce itself) and, given a URL, calls it with the token.
//
// usage: node dpop_client.mjs ISSUER CLIENT_ID CLIENT_SECRET ALG [RESOURCE_URL [METHOD]]
// prints one JSON object: the token response, and the resource's status and body.
import * as client from 'openid-client'

const [issuer, clientId, clientSecret, alg, resourceUrl, method = 'GET'] = process.argv.slice(2)
const config = await client.discovery(new URL(issuer), clientId, undefined,
  client.ClientSecretBasic(clientSecret),
  { algorithm: 'oauth2', execute: [client.allowInsecureRequests] })
const keyPair = await client.randomDPoPKeyPair(alg)
const DPoP = client.getDPoPHandle(config, keyPair)
const result = {}
try {
  const tokens = await client.clientCredentialsGrant(config, {}, { DPoP })
  result.token_type = tokens.token_type
  result.access_token = tokens.access_token
  if (resourceUrl) {
    let response = await client.fetchProtectedResource(config, tokens.access_token,
      new URL(resourceUrl), method, undefined, undefined, { DPoP })
    result.resource = { status: response.status, body: await response.text() }
  }
} catch (error) {
  result.error = { name: error.name, code: error.code ?? null, message: error.message,
                   error: error.error ?? null, description: error.error_description ?? null,
                   status: error.status ?? error.cause?.status ?? null }
}
console.log(JSON.stringify(result))
