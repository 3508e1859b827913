package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
)

// The reference page (/api/docs) is rendered on the server from the
// OpenAPI document: one self-contained HTML page, no scripts, nothing
// loaded from elsewhere, readable without a browser's JavaScript.

type refPage struct {
	Title, Version, Summary string
	Description             template.HTML
	Tags                    []refTag
	Schemes                 []refScheme
	Schemas                 []refSchema
}

type refTag struct {
	Name        string
	Description string
	Ops         []refOp
}

type refOp struct {
	Anchor, Method, Path, Summary string
	Description                   template.HTML
	Auth                          []template.HTML
	Params                        []refField
	Body                          *refBody
	Responses                     []refResponse
}

type refField struct {
	Name, In    string
	Type        template.HTML
	Required    bool
	Description template.HTML
}

type refBody struct {
	Required    bool
	Description template.HTML
	Content     []refContent
}

type refContent struct {
	MediaType string
	Schema    template.HTML
	Examples  []refExample
}

type refExample struct{ Name, Text string }

type refResponse struct {
	Status      string
	Description template.HTML
	Headers     []refField
	Content     []refContent
}

type refScheme struct {
	Name, Kind  string
	Description template.HTML
}

type refSchema struct {
	Name        string
	Type        template.HTML
	Description template.HTML
	Props       []refField
	Enum        []refEnum
}

type refEnum struct{ Value, Meaning string }

var md = goldmark.New(goldmark.WithExtensions(extension.Table))

// markdown renders CommonMark (tables included); raw HTML in the source is
// not passed through.
func markdown(s string) template.HTML {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	var b bytes.Buffer
	if err := md.Convert([]byte(s), &b); err != nil {
		return template.HTML("<p>" + html.EscapeString(s) + "</p>") //nolint:gosec // escaped
	}
	return template.HTML(b.String()) //nolint:gosec // goldmark escapes raw HTML unless told otherwise
}

var methodOrder = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}

func renderReference(doc *openapi3.T) ([]byte, error) {
	p := refPage{Title: doc.Info.Title, Version: doc.Info.Version, Summary: doc.Info.Summary, Description: markdown(doc.Info.Description)}
	tagIndex := map[string]int{}
	for _, t := range doc.Tags {
		tagIndex[t.Name] = len(p.Tags)
		p.Tags = append(p.Tags, refTag{Name: t.Name, Description: t.Description})
	}
	paths := doc.Paths.Map()
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, path := range keys {
		item := paths[path]
		ops := item.Operations()
		for _, m := range methodOrder {
			op := ops[m]
			if op == nil {
				continue
			}
			tag := "other"
			if len(op.Tags) > 0 {
				tag = op.Tags[0]
			}
			i, ok := tagIndex[tag]
			if !ok {
				i = len(p.Tags)
				tagIndex[tag] = i
				p.Tags = append(p.Tags, refTag{Name: tag})
			}
			p.Tags[i].Ops = append(p.Tags[i].Ops, refOperation(m, path, item, op))
		}
	}
	if doc.Components != nil {
		names := make([]string, 0, len(doc.Components.SecuritySchemes))
		for n := range doc.Components.SecuritySchemes {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			s := doc.Components.SecuritySchemes[n].Value
			kind := s.Type
			switch {
			case s.Type == "http":
				kind = "HTTP " + s.Scheme
			case s.Type == "apiKey":
				kind = s.In + " " + s.Name
			}
			p.Schemes = append(p.Schemes, refScheme{Name: n, Kind: kind, Description: markdown(s.Description)})
		}
		names = names[:0]
		for n := range doc.Components.Schemas {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p.Schemas = append(p.Schemas, refSchemaOf(n, doc.Components.Schemas[n].Value))
		}
	}
	var b bytes.Buffer
	if err := referenceTemplate.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render the API reference: %w", err)
	}
	return b.Bytes(), nil
}

func refOperation(method, path string, item *openapi3.PathItem, op *openapi3.Operation) refOp {
	ro := refOp{
		Anchor: "op-" + op.OperationID, Method: method, Path: path, Summary: op.Summary,
		Description: markdown(op.Description),
	}
	switch {
	case op.Security == nil || len(*op.Security) == 0:
		ro.Auth = []template.HTML{"none"}
	default:
		for _, req := range *op.Security {
			for name, scopes := range req {
				s := `<a href="#auth-` + html.EscapeString(name) + `">` + html.EscapeString(name) + `</a>`
				if len(scopes) > 0 {
					s += " — roles: <b>" + html.EscapeString(strings.Join(scopes, ", ")) + "</b>"
				}
				ro.Auth = append(ro.Auth, template.HTML(s)) //nolint:gosec // escaped above
			}
		}
	}
	params := slices.Clone(item.Parameters)
	params = append(params, op.Parameters...)
	for _, pr := range params {
		prm := pr.Value
		ro.Params = append(ro.Params, refField{
			Name: prm.Name, In: prm.In, Type: schemaType(prm.Schema), Required: prm.Required,
			Description: markdown(prm.Description),
		})
	}
	if op.RequestBody != nil && op.RequestBody.Value != nil {
		rb := op.RequestBody.Value
		ro.Body = &refBody{Required: rb.Required, Description: markdown(rb.Description), Content: refContents(rb.Content)}
	}
	if op.Responses != nil {
		codes := make([]string, 0, op.Responses.Len())
		for c := range op.Responses.Map() {
			codes = append(codes, c)
		}
		sort.Strings(codes) // "default" sorts after the numbers
		for _, code := range codes {
			r := op.Responses.Value(code).Value
			rr := refResponse{Status: code, Content: refContents(r.Content)}
			if r.Description != nil {
				rr.Description = markdown(*r.Description)
			}
			hs := make([]string, 0, len(r.Headers))
			for h := range r.Headers {
				hs = append(hs, h)
			}
			sort.Strings(hs)
			for _, h := range hs {
				hv := r.Headers[h].Value
				rr.Headers = append(rr.Headers, refField{Name: h, Type: schemaType(hv.Schema), Description: markdown(hv.Description)})
			}
			ro.Responses = append(ro.Responses, rr)
		}
	}
	return ro
}

func refContents(c openapi3.Content) []refContent {
	types := make([]string, 0, len(c))
	for t := range c {
		types = append(types, t)
	}
	sort.Strings(types)
	var out []refContent
	for _, t := range types {
		mt := c[t]
		rc := refContent{MediaType: t, Schema: schemaType(mt.Schema)}
		if mt.Example != nil {
			rc.Examples = append(rc.Examples, refExample{Text: exampleText(mt.Example)})
		}
		names := make([]string, 0, len(mt.Examples))
		for n := range mt.Examples {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if ex := mt.Examples[n].Value; ex != nil {
				rc.Examples = append(rc.Examples, refExample{Name: n, Text: exampleText(ex.Value)})
			}
		}
		out = append(out, rc)
	}
	return out
}

func exampleText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// schemaType is a short description of a schema for tables: a link for a
// named schema, "array of …", "map of …", the enum values.
func schemaType(sr *openapi3.SchemaRef) template.HTML {
	if sr == nil {
		return "any"
	}
	if sr.Ref != "" {
		name := sr.Ref[strings.LastIndex(sr.Ref, "/")+1:]
		return template.HTML(`<a href="#schema-` + html.EscapeString(name) + `">` + html.EscapeString(name) + `</a>`) //nolint:gosec // escaped
	}
	s := sr.Value
	if s == nil {
		return "any"
	}
	switch {
	case len(s.OneOf) > 0:
		parts := make([]string, len(s.OneOf))
		for i, o := range s.OneOf {
			parts[i] = string(schemaType(o))
		}
		return template.HTML("one of " + strings.Join(parts, " | ")) //nolint:gosec // parts are escaped
	case s.Const != nil:
		return template.HTML("<code>" + html.EscapeString(fmt.Sprint(s.Const)) + "</code>") //nolint:gosec // escaped
	case len(s.Enum) > 0:
		vals := make([]string, len(s.Enum))
		for i, v := range s.Enum {
			vals[i] = "<code>" + html.EscapeString(fmt.Sprint(v)) + "</code>"
		}
		return template.HTML(strings.Join(vals, " | ")) //nolint:gosec // escaped
	}
	var types []string
	if s.Type != nil {
		types = s.Type.Slice()
	}
	var out []string
	for _, t := range types {
		switch t {
		case "array":
			out = append(out, "array of "+string(schemaType(s.Items)))
		case "object":
			if ap := s.AdditionalProperties.Schema; ap != nil {
				out = append(out, "map of "+string(schemaType(ap)))
			} else {
				out = append(out, "object")
			}
		default:
			t = html.EscapeString(t)
			if s.Format != "" {
				t += " (" + html.EscapeString(s.Format) + ")"
			}
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return "any"
	}
	return template.HTML(strings.Join(out, " or ")) //nolint:gosec // parts are escaped
}

func refSchemaOf(name string, s *openapi3.Schema) refSchema {
	rs := refSchema{Name: name, Description: markdown(s.Description), Type: schemaType(&openapi3.SchemaRef{Value: s})}
	props := make([]string, 0, len(s.Properties))
	for p := range s.Properties {
		props = append(props, p)
	}
	sort.Strings(props)
	for _, p := range props {
		ps := s.Properties[p]
		var desc string
		if ps.Value != nil {
			desc = ps.Value.Description
		}
		rs.Props = append(rs.Props, refField{
			Name: p, Type: schemaType(ps), Required: slices.Contains(s.Required, p), Description: markdown(desc),
		})
	}
	meanings, _ := s.Extensions["x-enum-descriptions"].(map[string]any)
	for _, v := range s.Enum {
		val := fmt.Sprint(v)
		m, _ := meanings[val].(string)
		rs.Enum = append(rs.Enum, refEnum{Value: val, Meaning: m})
	}
	return rs
}

var referenceTemplate = template.Must(template.New("ref").Funcs(template.FuncMap{
	"lower": strings.ToLower,
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} {{.Version}} — HTTP API reference</title>
<style>
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1f24;display:flex}
nav{width:17rem;flex:none;height:100vh;overflow:auto;position:sticky;top:0;background:#f6f8fa;border-right:1px solid #d0d7de;padding:1rem;box-sizing:border-box;font-size:13px}
nav a{display:block;color:#1b1f24;text-decoration:none;padding:1px 0}nav a:hover{text-decoration:underline}
nav h3{margin:1rem 0 .25rem;font-size:12px;text-transform:uppercase;color:#57606a}
main{max-width:60rem;padding:1rem 2rem 4rem;min-width:0}
code,pre{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:.6rem;overflow:auto;max-height:28rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td p{margin:0}
.op{border-top:2px solid #d0d7de;margin-top:2rem;padding-top:.5rem}
.m{display:inline-block;min-width:4.2rem;text-align:center;font-weight:700;color:#fff;border-radius:4px;padding:0 .4rem;margin-right:.5rem}
.get{background:#0969da}.head{background:#57606a}.post{background:#1a7f37}.put{background:#9a6700}.delete{background:#cf222e}.patch{background:#8250df}
.req{color:#cf222e;font-size:12px}
h1{margin-bottom:0}.sub{color:#57606a;margin-top:.2rem}
</style>
</head>
<body>
<nav>
<b>{{.Title}} {{.Version}}</b>
<a href="/api/v1/openapi.json">openapi.json</a>
{{range .Tags}}{{if .Ops}}<h3>{{.Name}}</h3>{{range .Ops}}<a href="#{{.Anchor}}">{{.Method}} {{.Path}}</a>{{end}}{{end}}{{end}}
<h3>authentication</h3>{{range .Schemes}}<a href="#auth-{{.Name}}">{{.Name}}</a>{{end}}
<h3>schemas</h3>{{range .Schemas}}<a href="#schema-{{.Name}}">{{.Name}}</a>{{end}}
</nav>
<main>
<h1>{{.Title}} HTTP API</h1>
<p class="sub">{{.Summary}}<br>version {{.Version}} · OpenAPI 3.1 · <a href="/api/v1/openapi.json">/api/v1/openapi.json</a></p>
{{.Description}}
{{range .Tags}}{{if .Ops}}
<h2 id="tag-{{.Name}}">{{.Name}}</h2>
<p>{{.Description}}</p>
{{range .Ops}}
<section class="op" id="{{.Anchor}}">
<h3><span class="m {{lower .Method}}">{{.Method}}</span><code>{{.Path}}</code></h3>
<p><b>{{.Summary}}</b></p>
{{.Description}}
<p>Authentication: {{range $i, $a := .Auth}}{{if $i}}; or {{end}}{{$a}}{{end}}</p>
{{if .Params}}<h4>Parameters</h4>
<table><tr><th>name</th><th>in</th><th>type</th><th>description</th></tr>
{{range .Params}}<tr><td><code>{{.Name}}</code>{{if .Required}} <span class="req">required</span>{{end}}</td><td>{{.In}}</td><td>{{.Type}}</td><td>{{.Description}}</td></tr>{{end}}
</table>{{end}}
{{with .Body}}<h4>Request body{{if .Required}} <span class="req">required</span>{{end}}</h4>
{{.Description}}
{{range .Content}}<p><code>{{.MediaType}}</code>: {{.Schema}}</p>{{range .Examples}}{{if .Name}}<p>Example <i>{{.Name}}</i>:</p>{{end}}<pre>{{.Text}}</pre>{{end}}{{end}}
{{end}}
<h4>Responses</h4>
<table><tr><th>status</th><th>description</th><th>body</th></tr>
{{range .Responses}}<tr><td><b>{{.Status}}</b></td><td>{{.Description}}{{range .Headers}}<p>Header <code>{{.Name}}</code>: {{.Description}}</p>{{end}}</td><td>{{range .Content}}<code>{{.MediaType}}</code>: {{.Schema}}<br>{{end}}</td></tr>{{end}}
</table>
{{range .Responses}}{{$st := .Status}}{{range .Content}}{{range .Examples}}<p>Example {{$st}}{{if .Name}} <i>{{.Name}}</i>{{end}}:</p><pre>{{.Text}}</pre>{{end}}{{end}}{{end}}
</section>
{{end}}{{end}}{{end}}
<h2 id="authentication">Authentication</h2>
{{range .Schemes}}<h3 id="auth-{{.Name}}">{{.Name}} <small>({{.Kind}})</small></h3>{{.Description}}{{end}}
<h2 id="schemas">Schemas</h2>
{{range .Schemas}}
<section id="schema-{{.Name}}">
<h3>{{.Name}}</h3>
<p>{{.Type}}</p>
{{.Description}}
{{if .Props}}<table><tr><th>field</th><th>type</th><th>description</th></tr>
{{range .Props}}<tr><td><code>{{.Name}}</code>{{if .Required}} <span class="req">required</span>{{end}}</td><td>{{.Type}}</td><td>{{.Description}}</td></tr>{{end}}
</table>{{end}}
{{if .Enum}}<table><tr><th>value</th><th>meaning</th></tr>
{{range .Enum}}<tr><td><code>{{.Value}}</code></td><td>{{.Meaning}}</td></tr>{{end}}
</table>{{end}}
</section>
{{end}}
</main>
</body>
</html>
`))
