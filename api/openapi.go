package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v5"
	"go.yaml.in/yaml/v3"
)

// openapiYAML is the HTTP contract. Tests hold the server to it: every
// route is in it, every path in it is served, and every request and
// response of the end-to-end tests is validated against it.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPISource returns the contract as written (YAML, info.version "dev").
func OpenAPISource() []byte { return bytes.Clone(openapiYAML) }

// OpenAPIJSON returns the contract as JSON with info.version set to
// version (the server's own).
func OpenAPIJSON(version string) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("parse api/openapi.yaml: %w", err)
	}
	info, ok := doc["info"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("api/openapi.yaml has no info object")
	}
	if version != "" {
		info["version"] = version
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode the OpenAPI document: %w", err)
	}
	return b, nil
}

// LoadOpenAPI parses the contract (with info.version set to version) into
// kin-openapi's model, with every $ref resolved.
func LoadOpenAPI(ctx context.Context, version string) (*openapi3.T, error) {
	b, err := OpenAPIJSON(version)
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(b)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	return doc, nil
}

// contract is the document as served, built on first request.
type contract struct {
	once sync.Once
	json []byte
	html []byte
	err  error
}

func (s *Server) contractDoc(ctx context.Context) (*contract, error) {
	c := &s.contract
	c.once.Do(func() {
		if c.json, c.err = OpenAPIJSON(s.deps.Version); c.err != nil {
			return
		}
		doc, err := LoadOpenAPI(ctx, s.deps.Version)
		if err != nil {
			c.err = err
			return
		}
		c.html, c.err = renderReference(doc)
	})
	return c, c.err
}

func (s *Server) openAPI(c *echo.Context) error {
	doc, err := s.contractDoc(c.Request().Context())
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc.json)
}

func (s *Server) apiDocs(c *echo.Context) error {
	doc, err := s.contractDoc(c.Request().Context())
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, doc.html)
}
