// Package docs holds postbud's documentation: the event contract in prose
// (events.md), the design (design.md) and the OpenAPI 3.1 document of the
// HTTP API (openapi.yaml), which it embeds so the API can serve it.
package docs

import _ "embed"

// OpenAPI is openapi.yaml: the OpenAPI 3.1 document of postbud's HTTP API,
// served at GET /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
