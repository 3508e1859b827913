package mapping

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/jsonscan"
)

// Trace sources that are not paths.
const (
	SourceConstant = "constant"
	SourceDefault  = "default"
)

// FieldTrace tells where one canonical field's value came from.
type FieldTrace struct {
	// Source is the path the value was read from, "constant", "default", or
	// "" when the field got no value; for a union, the paths read, joined
	// by " + ".
	Source string `json:"source"`
	// Raw is the JSON text found at Source (clipped to 512 bytes; for a
	// union, each path's joined by " + "), or the literal for a constant or
	// default.
	Raw string `json:"raw,omitempty"`
	// Value is the final canonical value (string, int, bool, time.Time,
	// []string or []core.Approval); nil when the field got no value.
	Value any `json:"value"`
}

// FieldError is one mapping problem.
type FieldError struct {
	Field   string `json:"field"`          // canonical field ("approvals[0].decision"), "" for the payload as a whole
	Path    string `json:"path,omitempty"` // the payload path concerned, when there is one
	Message string `json:"message"`
}

func (e FieldError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Path != "" {
		b.WriteString(" (path ")
		b.WriteString(e.Path)
		b.WriteString(")")
	}
	return b.String()
}

// Result is the outcome of applying a profile to one payload.
type Result struct {
	Kind string `json:"kind"`
	// Record is a *core.Change, *core.Incident, *core.Deployment or
	// *core.PIR filled from the payload. It is never nil, and is partly
	// filled when there are errors (for previews). Fields the connector
	// owns (Source, IDs, created/updated stamps) are left zero; so is a
	// deployment's started_at when the payload has none.
	Record any `json:"record"`
	// Fields traces every mapped canonical field.
	Fields map[string]FieldTrace `json:"fields"`
	// Errors lists every problem; when it is not empty the event must be
	// quarantined, not stored.
	Errors []FieldError `json:"errors,omitempty"`
}

// setTrace records a field's trace when traces are kept.
func setTrace(r *Result, field string, tr FieldTrace) {
	if r.Fields != nil {
		r.Fields[field] = tr
	}
}

// Err returns the errors as one error (core.Invalid values joined), or nil.
func (r Result) Err() error {
	if len(r.Errors) == 0 {
		return nil
	}
	errs := make([]error, len(r.Errors))
	for i, e := range r.Errors {
		field := e.Field
		if field == "" {
			field = "payload"
		}
		msg := e.Message
		if e.Path != "" {
			msg += " (path " + e.Path + ")"
		}
		errs[i] = core.Invalid(field, "%s", msg)
	}
	return errors.Join(errs...)
}

// doc is the record being read: its JSON text and, for the top-level record,
// the values of the first path components the profile uses, found in one
// pass over the object: as JSON text in vals ("" when absent) after
// scanRecord, or parsed in slots.
type doc struct {
	raw   string
	vals  []string
	slots []gjson.Result
}

func (d *doc) get(p cpath) gjson.Result {
	if p.top >= 0 && (d.vals != nil || d.slots != nil) {
		var r gjson.Result
		if d.vals != nil {
			if v := d.vals[p.top]; v != "" {
				r = parseValue(v)
			}
		} else {
			r = d.slots[p.top]
		}
		if p.rest == "" || !r.Exists() {
			return r
		}
		if p.plainRest {
			return objectGet(r, p.rest)
		}
		return r.Get(p.rest)
	}
	return gjson.Get(d.raw, p.raw)
}

// extract reads the value at p by extract's rules. exists is false when
// the path finds nothing; raw is the JSON text found. For a path that is an
// indexed key, or an indexed key and one plain key, it reads the indexed
// text in place (no gjson Results) and falls back to gjson only for what
// scalarText leaves undecided.
//
// presence is as for scalarText: only whether the value is empty matters.
func (d *doc) extract(p cpath, presence bool) (v value, raw string, exists bool, err error) {
	if p.top >= 0 && d.vals != nil && (p.rest == "" || p.plainRest) {
		raw = d.vals[p.top]
		if raw == "" {
			return value{}, "", false, nil
		}
		if p.rest != "" {
			sub, found, ok := lookupRaw(raw, p.rest)
			if !ok {
				goto general
			}
			if !found {
				return value{}, "", false, nil
			}
			raw = sub
		}
		if s, ok := scalarText(raw, 0, presence); ok {
			return strValue(s), raw, true, nil
		}
		v, err = extract(parseValue(raw))
		return v, raw, true, err
	}
general:
	r := d.get(p)
	if !r.Exists() {
		return value{}, "", false, nil
	}
	v, err = extract(r)
	return v, r.Raw, true, err
}

// record finds the record in the payload (unwrapping the envelope).
func record(raw, unwrap string) (gjson.Result, error) {
	root := gjson.Parse(raw)
	rec := root
	if unwrap != "" {
		u := root.Get(unwrap)
		switch {
		case !u.Exists():
		case u.IsArray():
			n := 0
			u.ForEach(func(_, v gjson.Result) bool {
				n++
				rec = v
				return n < 2
			})
			if n != 1 {
				return rec, fmt.Errorf("%q holds %s records; expected exactly one", unwrap, map[bool]string{true: "no", false: "several"}[n == 0])
			}
		default:
			rec = u
		}
	}
	if !rec.IsObject() {
		return rec, fmt.Errorf("the record is not a JSON object")
	}
	return rec, nil
}

// Apply maps one raw payload to a canonical record. It never panics: invalid
// JSON and every field problem are reported in Result.Errors.
func (c *Compiled) Apply(payload []byte) Result { return c.apply(payload, true) }

// ApplyFast is Apply without the per-field traces: Result.Fields is nil;
// Kind, Record and Errors are the same as Apply's. It is for callers that
// store the record and do not show where its values came from (the
// normalizer); previews use Apply.
func (c *Compiled) ApplyFast(payload []byte) Result { return c.apply(payload, false) }

func (c *Compiled) apply(payload []byte, trace bool) (res Result) {
	res.Kind = c.profile.Kind
	rec := c.kind.new()
	res.Record = rec
	if trace {
		res.Fields = make(map[string]FieldTrace, len(c.fields))
	}
	defer func() {
		// Belt and braces: a bug must quarantine the event, not crash the
		// worker. The fuzz test fails on this message.
		if r := recover(); r != nil {
			res.Errors = append(res.Errors, FieldError{Message: fmt.Sprintf("internal mapping error: %v", r)})
		}
	}()
	var d doc
	valid, handled := c.scanRecord(payload, &d)
	if !valid {
		res.Errors = append(res.Errors, FieldError{Message: "payload is not valid JSON"})
		return res
	}
	if !handled {
		// An envelope that is a gjson path or an array, or a top level
		// that is not an object: find the record the general way.
		r, err := record(string(payload), c.unwrap)
		if err != nil {
			res.Errors = append(res.Errors, FieldError{Path: c.unwrap, Message: err.Error()})
			return res
		}
		d = doc{raw: r.Raw, slots: make([]gjson.Result, c.topCount)}
		left := c.topCount
		if left > 0 {
			r.ForEach(func(k, v gjson.Result) bool {
				if i, ok := c.topKeys[k.Str]; ok && !d.slots[i].Exists() {
					d.slots[i] = v
					left--
				}
				return left > 0
			})
		}
	}
	for _, f := range c.fields {
		if f.def.typ == tApprovals {
			c.applyApprovals(&res, rec, f, &d)
			continue
		}
		var direct any // ApplyFast: typed fields store their value themselves
		if !trace {
			direct = rec
		}
		out, tr, ferr := f.eval(&d, f.name, direct)
		setTrace(&res, f.name, tr)
		if ferr != nil {
			res.Errors = append(res.Errors, *ferr)
			continue
		}
		if out != nil {
			f.def.set(rec, out)
		}
	}
	return res
}

func (c *Compiled) applyApprovals(res *Result, rec any, f *cfield, d *doc) {
	tr := FieldTrace{}
	for _, cnd := range f.when {
		if !cnd.eval(d) {
			setTrace(res, f.name, tr)
			return
		}
	}
	// The first path present is read (an API-enriched member before a
	// custom field, say); each element then maps the same way.
	p := f.paths[0]
	arr := d.get(p)
	for _, alt := range f.paths[1:] {
		if present(arr) {
			break
		}
		p, arr = alt, d.get(alt)
	}
	if !present(arr) {
		setTrace(res, f.name, tr)
		if f.required {
			res.Errors = append(res.Errors, FieldError{Field: f.name, Path: p.raw, Message: "required: no approvals found"})
		}
		return
	}
	if !arr.IsArray() {
		setTrace(res, f.name, tr)
		res.Errors = append(res.Errors, FieldError{Field: f.name, Path: p.raw, Message: "not an array"})
		return
	}
	tr.Source, tr.Raw = p.raw, clip(arr.Raw)
	var out []core.Approval
	i := 0
	arr.ForEach(func(_, e gjson.Result) bool {
		ed := doc{raw: e.Raw}
		var a core.Approval
		for _, sf := range f.each {
			name := f.name + "[" + strconv.Itoa(i) + "]." + sf.name
			v, _, ferr := sf.eval(&ed, name, nil)
			if ferr != nil {
				res.Errors = append(res.Errors, *ferr)
				continue
			}
			if v != nil {
				sf.def.set(&a, v)
			}
		}
		out = append(out, a)
		i++
		return true
	})
	tr.Value = out
	setTrace(res, f.name, tr)
	f.def.set(rec, out)
}

func clip(s string) string {
	const max = 512
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// eval computes one field. It returns the converted value (nil when the
// field gets no value), its trace, and at most one error. When rec is not
// nil, a string or time field read from the payload is stored into rec
// directly (no interface boxing) and the value returned and traced is nil.
func (f *cfield) eval(d *doc, name string, rec any) (any, FieldTrace, *FieldError) {
	var tr FieldTrace
	active := f.active(d)
	var v value
	if active {
		if f.hasConst {
			tr.Source, tr.Raw, tr.Value = SourceConstant, f.constRaw, f.constVal
			return f.constVal, tr, nil
		}
		if ferr := f.fromPaths(d, name, &v, &tr); ferr != nil {
			return nil, tr, ferr
		}
		if v.k != vNone && (f.transforms != nil || f.mapping != nil) {
			if ferr := f.refine(d, &v, name, tr.Source); ferr != nil {
				return nil, tr, ferr
			}
		}
		if f.groups != nil && v.k == vList {
			v.l = distinct(v.l) // as read, and after the transforms: "PAY" and "pay" lowered are one
		}
	}
	var out any
	var ferr *FieldError
	if v.k == vNone {
		out, ferr = f.absent(name, active, &tr)
	} else {
		out, ferr = f.store(&v, name, rec, &tr)
	}
	return out, tr, ferr
}

// fieldError is the error of field name whose value came from path.
func fieldError(name, path, format string, args ...any) *FieldError {
	return &FieldError{Field: name, Path: path, Message: fmt.Sprintf(format, args...)}
}

// active reports whether every when condition holds.
func (f *cfield) active(d *doc) bool {
	for _, cnd := range f.when {
		if !cnd.eval(d) {
			return false
		}
	}
	return true
}

// refine runs v, read from source in d, through the transforms and the
// map. (v is an in-out parameter: the value is large, and this is the
// mapping's inner loop.)
func (f *cfield) refine(d *doc, v *value, name, source string) *FieldError {
	for i := range f.transforms {
		t := &f.transforms[i]
		var err error
		if *v, err = t.apply(d, *v); err != nil {
			return fieldError(name, source, "transform[%d] %s: %v", i, t.name, err)
		}
		if v.k == vNone {
			return nil
		}
	}
	if f.mapping != nil {
		return f.mapped(v, name, source)
	}
	return nil
}

// fromPaths reads into v the first of the field's paths that has a value,
// noting its source in tr; v stays vNone when none has. A path whose value
// cannot be read is an error only when no later path has one.
func (f *cfield) fromPaths(d *doc, name string, v *value, tr *FieldTrace) *FieldError {
	if f.groups != nil {
		return f.fromUnion(d, name, v, tr)
	}
	return firstOf(d, f.paths, len(f.transforms) > 0 && f.transforms[0].op == tPresent, name, v, tr)
}

// fromUnion reads into v the values of every path group of a union, each
// group's first path with a value, joined into one list (eval keeps each
// value once); tr's source and raw name each group read.
func (f *cfield) fromUnion(d *doc, name string, v *value, tr *FieldTrace) *FieldError {
	var (
		out           []string
		sources, raws []string
		firstErr      *FieldError
	)
	for _, g := range f.groups {
		var gv value
		var gt FieldTrace
		if ferr := firstOf(d, g, false, name, &gv, &gt); ferr != nil {
			// An unreadable source is an error only when no other group
			// gives a value (as a path of paths is).
			if firstErr == nil {
				firstErr = ferr
			}
			continue
		}
		var vals []string
		switch gv.k {
		case vNone:
			continue
		case vList:
			vals = gv.l
		default:
			s, err := gv.text()
			if err != nil {
				return fieldError(name, gt.Source, "%v", err)
			}
			vals = []string{s}
		}
		out = append(out, vals...)
		sources, raws = append(sources, gt.Source), append(raws, gt.Raw)
	}
	if len(out) == 0 {
		if firstErr != nil {
			return firstErr
		}
		return nil
	}
	*v, tr.Source, tr.Raw = listValue(out), strings.Join(sources, " + "), clip(strings.Join(raws, " + "))
	return nil
}

// distinct returns l with each value once, in the order first given.
func distinct(l []string) []string {
	out := l[:0:0]
	for _, s := range l {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// firstOf reads into v the first of paths that has a value (see fromPaths).
func firstOf(d *doc, paths []cpath, presence bool, name string, v *value, tr *FieldTrace) *FieldError {
	var firstErr error
	var errPath string
	for _, p := range paths {
		x, raw, exists, err := d.extract(p, presence)
		if !exists {
			continue
		}
		if err != nil {
			if firstErr == nil {
				firstErr, errPath = err, p.raw
			}
			continue
		}
		if x.k == vNone {
			continue
		}
		*v, tr.Source, tr.Raw = x, p.raw, clip(raw)
		return nil
	}
	if firstErr != nil {
		return fieldError(name, errPath, "%v", firstErr)
	}
	return nil
}

// mapped replaces v by its entry in the field's value map.
func (f *cfield) mapped(v *value, name, source string) *FieldError {
	s, err := v.text()
	if err != nil {
		return fieldError(name, source, "map: %v", err)
	}
	if m, ok := f.mapping[s]; ok {
		*v = strValue(m)
		return nil
	}
	if f.mapDefault != nil {
		*v = strValue(*f.mapDefault)
		return nil
	}
	if !f.keep {
		return fieldError(name, source, "value %q is not in the map (add it, or set map_default or unmapped: keep)", s)
	}
	return nil
}

// absent is the field with no value read: its default, an error when it is
// required, or nothing.
func (f *cfield) absent(name string, active bool, tr *FieldTrace) (any, *FieldError) {
	if f.hasDefault {
		tr.Source, tr.Raw, tr.Value = SourceDefault, f.defRaw, f.defVal
		return f.defVal, nil
	}
	if !f.required {
		tr.Source, tr.Raw = "", ""
		return nil, nil
	}
	paths := make([]string, len(f.paths))
	for i, p := range f.paths {
		paths[i] = p.raw
	}
	if !active {
		return nil, fieldError(name, strings.Join(paths, ", "), "required, but its when conditions do not hold")
	}
	return nil, fieldError(name, strings.Join(paths, ", "), "required, but the payload has no value")
}

// store converts v to the field's type. With rec, string and time fields
// are set in rec directly and the value returned is nil.
func (f *cfield) store(v *value, name string, rec any, tr *FieldTrace) (any, *FieldError) {
	if rec != nil {
		switch {
		case f.def.typ == tString && f.def.setStr != nil:
			s, err := textFor(f.def, *v)
			if err != nil {
				return nil, fieldError(name, tr.Source, "%v", err)
			}
			f.def.setStr(rec, s)
			return nil, nil
		case f.def.typ == tTime && f.def.setTime != nil:
			t, err := timeFor(*v)
			if err != nil {
				return nil, fieldError(name, tr.Source, "%v", err)
			}
			f.def.setTime(rec, t)
			return nil, nil
		}
	}
	out, err := convertFor(f.def, *v)
	if err != nil {
		return nil, fieldError(name, tr.Source, "%v", err)
	}
	tr.Value = out
	return out, nil
}

func (c ccond) eval(d *doc) bool {
	if c.op == opExists {
		return present(d.get(c.path)) == c.exists
	}
	v, _, exists, err := d.extract(c.path, false)
	if c.op == opNotIn {
		switch {
		case err != nil:
			return false
		case !exists || v.k == vNone:
			return true
		case v.k == vList:
			return !slices.ContainsFunc(v.l, func(s string) bool { return contains(c.in, s) })
		}
		return !contains(c.in, v.s)
	}
	if !exists || err != nil || v.k == vNone {
		return false
	}
	test := func(s string) bool {
		switch c.op {
		case opEquals:
			return s == c.eq
		case opIn:
			return contains(c.in, s)
		case opMatches:
			return c.re.MatchString(s)
		}
		return false
	}
	if v.k == vList {
		for _, s := range v.l {
			if test(s) {
				return true
			}
		}
		return false
	}
	return test(v.s)
}

func mapText(v value, fn func(string) string) value {
	switch v.k {
	case vStr:
		return strValue(fn(v.s))
	case vList:
		out := make([]string, 0, len(v.l))
		for _, s := range v.l {
			if s = fn(s); s != "" {
				out = append(out, s)
			}
		}
		return listValue(out)
	}
	return v
}

// apply runs one transform step on v, read from d.
func (t ctransform) apply(d *doc, v value) (value, error) {
	switch t.op {
	case tTrim:
		return mapText(v, strings.TrimSpace), nil
	case tLower:
		return mapText(v, strings.ToLower), nil
	case tUpper:
		return mapText(v, strings.ToUpper), nil
	case tRegex:
		return mapText(v, t.submatch), nil
	case tSplit:
		return t.split(v), nil
	case tJoin:
		return t.join(v), nil
	case tFirst:
		return first(v), nil
	case tTimeParse:
		return t.parseTime(v)
	case tUnixS, tUnixMS:
		return t.parseUnix(v)
	case tBoolParse:
		return toBool(v)
	case tIntParse:
		return toInt(v)
	case tPresent:
		return value{k: vBool, b: v.k != vNone}, nil
	case tMinus:
		return t.minus(d, v)
	}
	return v, fmt.Errorf("unknown transform")
}

// maxMinus bounds what a minus step takes off (about 31 years), within
// what a time.Duration holds.
const maxMinus = 1e18 * time.Nanosecond

// minus takes the duration read at the step's path off the time v. A path
// that holds nothing takes nothing off: a payload that names no duration
// (an older version of its sender) keeps the time as it is.
func (t ctransform) minus(d *doc, v value) (value, error) {
	if v.k != vTime {
		return v, fmt.Errorf("needs a time, got %s", v.k)
	}
	dv, _, _, err := d.extract(t.path, false)
	if err != nil {
		return v, fmt.Errorf("%s: %v", t.path.raw, err)
	}
	s, err := dv.text()
	if err != nil {
		return v, fmt.Errorf("%s: %v", t.path.raw, err)
	}
	if s = strings.TrimSpace(s); s == "" {
		return v, nil
	}
	n, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil || math.IsNaN(n):
		return v, fmt.Errorf("%s: %q is not a number", t.path.raw, s)
	case n < 0:
		return v, fmt.Errorf("%s: %q is a negative duration", t.path.raw, s)
	case n*float64(t.unit) > float64(maxMinus):
		return v, fmt.Errorf("%s: %q is out of range", t.path.raw, s)
	}
	v.t = v.t.Add(-time.Duration(math.Round(n * float64(t.unit))))
	return v, nil
}

// submatch is the regex step on one text: the group matched, or "".
func (t ctransform) submatch(s string) string {
	m := t.re.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[t.group]
}

// split splits a text, or each text of a list, at the separator, dropping
// empty parts.
func (t ctransform) split(v value) value {
	in := v.l
	if v.k == vStr {
		in = []string{v.s}
	}
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, t.sep) {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	return listValue(out)
}

// join joins a list with the separator; other values pass.
func (t ctransform) join(v value) value {
	if v.k == vList {
		return strValue(strings.Join(v.l, t.sep))
	}
	return v
}

// first is a list's first text; other values pass.
func first(v value) value {
	if v.k == vList {
		return strValue(v.l[0])
	}
	return v
}

// parseTime reads a text with the first layout that fits.
func (t ctransform) parseTime(v value) (value, error) {
	if v.k != vStr {
		return v, fmt.Errorf("needs text, got %s", v.k)
	}
	s := strings.TrimSpace(v.s)
	for _, l := range t.layouts {
		if tm, err := time.ParseInLocation(l, s, t.loc); err == nil {
			return value{k: vTime, t: tm}, nil
		}
	}
	return v, fmt.Errorf("%q matches no layout (%s)", v.s, strings.Join(t.layouts, " | "))
}

// parseUnix reads seconds (or milliseconds) since the Unix epoch.
func (t ctransform) parseUnix(v value) (value, error) {
	s, err := v.text()
	if err != nil {
		return v, err
	}
	tm, err := parseUnix(s, t.op == tUnixMS)
	if err != nil {
		return v, err
	}
	return value{k: vTime, t: tm}, nil
}

// toBool reads a boolean from a boolean, a number (non-zero is true) or a
// text.
func toBool(v value) (value, error) {
	switch v.k {
	case vBool:
		return v, nil
	case vInt:
		return value{k: vBool, b: v.i != 0}, nil
	case vStr:
		b, err := parseBool(v.s)
		return value{k: vBool, b: b}, err
	}
	return v, fmt.Errorf("needs text, got %s", v.k)
}

// toInt reads an integer from a number or a text.
func toInt(v value) (value, error) {
	switch v.k {
	case vInt:
		return v, nil
	case vStr:
		i, err := parseInt(v.s)
		return value{k: vInt, i: i}, err
	}
	return v, fmt.Errorf("needs text, got %s", v.k)
}

// Matches reports whether the profile applies to an event: the connector
// type and event type (when the profile names them) and every match.when
// condition on the (unwrapped) record hold. A payload that is not valid
// JSON matches on connector and event type alone, so that Apply reports it
// and the event is quarantined rather than ignored.
func (c *Compiled) Matches(connectorType, eventType string, payload []byte) bool {
	var text *string
	return c.matches(connectorType, eventType, payload, &text)
}

// matches is Matches with the payload's text shared across the profiles
// a Set tries: *text is set the first time a profile needs it, so an
// event is copied into a string once, not once per profile.
func (c *Compiled) matches(connectorType, eventType string, payload []byte, text **string) bool {
	m := c.profile.Match
	if m.ConnectorType != "" && !strings.EqualFold(m.ConnectorType, connectorType) {
		return false
	}
	if len(c.events) > 0 {
		ok := false
		for _, e := range c.events {
			if strings.EqualFold(e, eventType) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(c.match) == 0 {
		return true
	}
	if !jsonscan.Valid(payload) {
		return true
	}
	if *text == nil {
		t := string(payload)
		*text = &t
	}
	r, err := record(**text, c.unwrap)
	if err != nil {
		return false
	}
	d := doc{raw: r.Raw}
	for _, cnd := range c.match {
		if !cnd.eval(&d) {
			return false
		}
	}
	return true
}
