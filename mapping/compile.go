package mapping

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zones in profiles must load on machines without a zoneinfo database

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/core"
)

// Compiled is a validated profile, ready to apply. It is immutable and safe
// for concurrent use.
type Compiled struct {
	profile  Profile
	kind     kindDef
	unwrap   string
	match    []ccond
	events   []string
	fields   []*cfield // sorted by name
	topKeys  map[string]int
	topCount int
	spec     int // specificity, for Set ordering

	// For Apply's single pass (scan.go): filter pre-screens top-level
	// keys; indexable says the envelope is absent or a plain key, so the
	// record can be found while validating; needRaw says some field reads
	// a path that does not start with a plain key and needs the whole
	// record text.
	filter    *keyFilter
	indexable bool
	needRaw   bool
}

// Name returns the profile name.
func (c *Compiled) Name() string { return c.profile.Name }

// Kind returns the canonical kind the profile produces.
func (c *Compiled) Kind() string { return c.profile.Kind }

// Profile returns a copy of the profile the Compiled was built from (its
// maps and slices are shared: do not modify them).
func (c *Compiled) Profile() Profile { return c.profile }

type cpath struct {
	raw       string
	top       int // slot of the first component in the record index, or -1
	rest      string
	plainRest bool // rest is one plain key
}

type condOp uint8

const (
	opEquals condOp = iota + 1
	opIn
	opNotIn
	opExists
	opMatches
)

type ccond struct {
	path   cpath
	op     condOp
	eq     string
	in     []string
	exists bool
	re     *regexp.Regexp
}

type tOp uint8

const (
	tTrim tOp = iota + 1
	tLower
	tUpper
	tSplit
	tJoin
	tFirst
	tRegex
	tTimeParse
	tUnixS
	tUnixMS
	tBoolParse
	tIntParse
	tPresent
	tMinus
)

type ctransform struct {
	op      tOp
	name    string
	sep     string
	re      *regexp.Regexp
	group   int
	layouts []string
	loc     *time.Location
	path    cpath         // minus: where the duration is read
	unit    time.Duration // minus: what one of it is
}

type cfield struct {
	name       string
	def        fieldDef
	paths      []cpath
	when       []ccond
	hasConst   bool
	constVal   any // converted canonical value
	constRaw   string
	hasDefault bool
	defVal     any
	defRaw     string
	transforms []ctransform
	mapping    map[string]string
	mapDefault *string
	keep       bool
	required   bool
	each       []*cfield // approvals
	// groups, for a union, are its path groups; paths then holds them all
	// (for messages).
	groups [][]cpath
}

// namedLayouts are the layout names accepted besides Go reference layouts.
var namedLayouts = map[string]string{
	"rfc3339":     time.RFC3339,
	"rfc3339nano": time.RFC3339Nano,
	"rfc1123":     time.RFC1123,
	"rfc1123z":    time.RFC1123Z,
	"datetime":    time.DateTime,
	"dateonly":    time.DateOnly,
}

var transformNames = []string{"trim", "lower", "upper", "split", "join", "first", "regex", "time", "unix_seconds", "unix_ms", "minus_seconds", "minus_ms", "bool", "int", "present"}

// static value kinds, as a bit set, for checking transform chains.
const (
	sStr  = 1 << vStr
	sList = 1 << vList
	sTime = 1 << vTime
	sBool = 1 << vBool
	sInt  = 1 << vInt
	// anyKind is every kind: what a chain may give once a step failed to
	// compile (the rest of the chain is then checked loosely).
	anyKind = sStr | sList | sTime | sBool | sInt
)

func maskName(m int) string {
	var parts []string
	for k := vStr; k <= vInt; k++ {
		if m&(1<<k) != 0 {
			parts = append(parts, k.String())
		}
	}
	return strings.Join(parts, " or ")
}

// compiler accumulates every problem of one profile.
type compiler struct {
	errs    []error
	topKeys map[string]int
}

func (cp *compiler) fail(field, format string, args ...any) {
	cp.errs = append(cp.errs, core.Invalid(field, format, args...))
}

// Compile validates p and prepares it for Apply. It reports every problem
// at once (errors.Join of *core.Error values of kind invalid, each naming the
// offending field, e.g. "fields.planned_start.transform[0].time.zone").
func Compile(p *Profile) (*Compiled, error) {
	if p == nil {
		return nil, core.Invalid("profile", "no profile")
	}
	cp := &compiler{topKeys: map[string]int{}}
	c := &Compiled{profile: *p}

	if strings.TrimSpace(p.Name) == "" {
		cp.fail("name", "is required")
	} else if !validName(p.Name) {
		cp.fail("name", "%q: use letters, digits, '-', '_' and '.' only", p.Name)
	}
	kd, ok := kinds[p.Kind]
	if !ok {
		cp.fail("kind", "unknown kind %q (one of %s)", p.Kind, strings.Join(Kinds(), ", "))
	}
	c.kind = kd

	if p.WholeRun && ok && p.Kind != KindDeployment {
		cp.fail("whole_run", "applies to deployment profiles only, not %s", p.Kind)
	}

	c.unwrap = strings.TrimSpace(p.Unwrap)
	if p.Unwrap != "" && c.unwrap == "" {
		cp.fail("unwrap", "is blank")
	}

	for i, e := range p.Match.EventTypes {
		if strings.TrimSpace(e) == "" {
			cp.fail(fmt.Sprintf("match.event_types[%d]", i), "is empty")
		}
	}
	c.events = p.Match.EventTypes
	c.match = cp.conds("match.when", p.Match.When, false)
	c.spec = len(p.Match.When)
	if p.Match.ConnectorType != "" {
		c.spec += 10
	}
	if len(p.Match.EventTypes) > 0 {
		c.spec += 5
	}

	if ok {
		if len(p.Fields) == 0 {
			cp.fail("fields", "no fields mapped")
		}
		for _, name := range sortedKeys(p.Fields) {
			fs := p.Fields[name]
			fp := "fields." + name
			def, known := kd.fields[name]
			if !known {
				cp.fail(fp, "unknown field %q for kind %s (known: %s)", name, p.Kind, strings.Join(FieldNames(p.Kind), ", "))
				continue
			}
			if fs == nil {
				cp.fail(fp, "is empty: give a path, paths, const or default")
				continue
			}
			if f := cp.field(fp, name, def, fs, true); f != nil {
				c.fields = append(c.fields, f)
			}
		}
	}
	if len(cp.errs) > 0 {
		return nil, fmt.Errorf("profile %q: %w", p.Name, errors.Join(cp.errs...))
	}
	c.topKeys = cp.topKeys
	c.topCount = len(cp.topKeys)
	c.filter = newKeyFilter(c.topKeys)
	c.indexable = c.unwrap == "" || simpleKey(c.unwrap) && !strings.Contains(c.unwrap, ".")
	for _, f := range c.fields {
		for _, p := range f.paths {
			c.needRaw = c.needRaw || p.top < 0
		}
		for _, cnd := range f.when {
			c.needRaw = c.needRaw || cnd.path.top < 0
		}
		for _, t := range f.transforms {
			c.needRaw = c.needRaw || t.op == tMinus && t.path.top < 0
		}
	}
	return c, nil
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// path compiles a gjson path. index says whether the path is evaluated on
// the record (and may use the record index) or on an array element.
func (cp *compiler) path(field, p string, index bool) (cpath, bool) {
	if strings.TrimSpace(p) == "" {
		cp.fail(field, "path is empty")
		return cpath{}, false
	}
	out := cpath{raw: p, top: -1}
	if !index {
		return out, true
	}
	first, rest, _ := strings.Cut(p, ".")
	if simpleKey(first) {
		slot, ok := cp.topKeys[first]
		if !ok {
			slot = len(cp.topKeys)
			cp.topKeys[first] = slot
		}
		out.top, out.rest = slot, rest
		out.plainRest = simpleKey(rest) && !strings.Contains(rest, ".")
	}
	return out, true
}

// simpleKey reports whether k is a plain object key in gjson syntax (no
// wildcard, escape, array query, modifier or pipe).
func simpleKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch k[i] {
		case '*', '?', '#', '@', '|', '\\', '!', '{', '}', '[', ']', '(', ')', '=', '<', '>', '%', ',', '"', '\'', ' ':
			return false
		}
	}
	return true
}

func (cp *compiler) conds(field string, cs []Condition, index bool) []ccond {
	var out []ccond
	for i, c := range cs {
		f := fmt.Sprintf("%s[%d]", field, i)
		pth, ok := cp.path(f+".path", c.Path, index)
		if !ok {
			continue
		}
		cc := ccond{path: pth}
		n := 0
		if c.Equals != nil {
			n++
			cc.op, cc.eq = opEquals, *c.Equals
		}
		if c.In != nil {
			n++
			cc.op, cc.in = opIn, c.In
			if len(c.In) == 0 {
				cp.fail(f+".in", "is empty")
			}
		}
		if c.NotIn != nil {
			n++
			cc.op, cc.in = opNotIn, c.NotIn
			if len(c.NotIn) == 0 {
				cp.fail(f+".not_in", "is empty")
			}
		}
		if c.Exists != nil {
			n++
			cc.op, cc.exists = opExists, *c.Exists
		}
		if c.Matches != "" {
			n++
			re, err := regexp.Compile(c.Matches)
			if err != nil {
				cp.fail(f+".matches", "bad regular expression: %v", err)
				continue
			}
			cc.op, cc.re = opMatches, re
		}
		if n != 1 {
			cp.fail(f, "give exactly one of equals, in, not_in, exists, matches (got %d)", n)
			continue
		}
		out = append(out, cc)
	}
	return out
}

// field compiles one field spec (fp is its place in the profile, for
// errors). index says whether its paths are read on the record or on an
// array element (approvals). It returns nil when the spec has a problem.
func (cp *compiler) field(fp, name string, def fieldDef, fs *FieldSpec, index bool) *cfield {
	nerr := len(cp.errs)
	f := &cfield{name: name, def: def, required: fs.Required, hasConst: fs.Const != nil, hasDefault: fs.Default != nil}
	paths := cp.fieldPaths(f, fp, fs, index)
	cp.checkSource(f, fp, fs, len(paths))
	f.when = cp.conds(fp+".when", fs.When, index)
	if def.typ == tApprovals {
		cp.approvals(f, fp, fs, len(paths))
	} else {
		cp.valueField(f, fp, fs, len(paths) > 0, index)
	}
	if len(cp.errs) > nerr {
		return nil
	}
	return f
}

// fieldPaths compiles path or paths into f.paths and returns the paths
// given.
func (cp *compiler) fieldPaths(f *cfield, fp string, fs *FieldSpec, index bool) []string {
	if fs.Path != "" && len(fs.Paths) > 0 {
		cp.fail(fp, "give path or paths, not both")
	}
	if len(fs.Union) > 0 {
		return cp.unionPaths(f, fp, fs, index)
	}
	paths := fs.Paths
	if fs.Path != "" {
		paths = []string{fs.Path}
	}
	for i, p := range paths {
		ff := fp + ".path"
		if len(fs.Paths) > 0 {
			ff = fmt.Sprintf("%s.paths[%d]", fp, i)
		}
		if pp, ok := cp.path(ff, p, index); ok {
			f.paths = append(f.paths, pp)
		}
	}
	return paths
}

// unionPaths compiles a union's path groups into f.groups (and f.paths)
// and returns every path given.
func (cp *compiler) unionPaths(f *cfield, fp string, fs *FieldSpec, index bool) []string {
	if fs.Path != "" || len(fs.Paths) > 0 {
		cp.fail(fp+".union", "give path, paths or union, only one of them")
	}
	if f.def.typ != tList {
		cp.fail(fp+".union", "only a list field takes a union (%s is a %s)", f.name, f.def.typ)
	}
	var all []string
	for gi, g := range fs.Union {
		if len(g) == 0 {
			cp.fail(fmt.Sprintf("%s.union[%d]", fp, gi), "is empty: give the paths of one source, the first with a value is read")
		}
		var group []cpath
		for i, p := range g {
			if pp, ok := cp.path(fmt.Sprintf("%s.union[%d][%d]", fp, gi, i), p, index); ok {
				group = append(group, pp)
				f.paths = append(f.paths, pp)
			}
		}
		f.groups = append(f.groups, group)
		all = append(all, g...)
	}
	return all
}

// checkSource checks that the field has one kind of source: paths, a
// constant, or a default (which paths may also have).
func (cp *compiler) checkSource(f *cfield, fp string, fs *FieldSpec, npaths int) {
	switch {
	case f.hasConst && npaths > 0:
		cp.fail(fp+".const", "a constant takes no path")
	case f.hasConst && (len(fs.Transform) > 0 || fs.Map != nil):
		cp.fail(fp+".const", "a constant is a canonical value: it takes no transform or map")
	case f.hasConst && f.hasDefault:
		cp.fail(fp+".const", "a constant takes no default")
	case !f.hasConst && npaths == 0 && !f.hasDefault && f.def.typ != tApprovals:
		cp.fail(fp, "no source: give path, paths, const or default")
	}
	if fs.Required && f.hasDefault {
		cp.fail(fp+".required", "a required field cannot have a default (the default would hide the missing value)")
	}
}

// approvals compiles a list of approvals: records read from the array at
// the field's one path, each element's fields mapped by fs.Each.
func (cp *compiler) approvals(f *cfield, fp string, fs *FieldSpec, npaths int) {
	if len(fs.Each) == 0 {
		cp.fail(fp+".each", "is required for %s: map the fields of one element (%s)", f.name, strings.Join(sortedKeys(approvalFields), ", "))
	}
	if npaths == 0 {
		cp.fail(fp+".path", "give the path to the array of approvals (or paths: the first present is read)")
	}
	if len(fs.Transform) > 0 || fs.Map != nil || f.hasDefault || f.hasConst {
		cp.fail(fp, "a list of approvals takes only path, each, when and required")
	}
	for _, sub := range sortedKeys(fs.Each) {
		sp := fp + ".each." + sub
		sd, ok := approvalFields[sub]
		if !ok {
			cp.fail(sp, "unknown approval field %q (known: %s)", sub, strings.Join(sortedKeys(approvalFields), ", "))
			continue
		}
		if fs.Each[sub] == nil {
			cp.fail(sp, "is empty")
			continue
		}
		if sf := cp.field(sp, sub, sd, fs.Each[sub], false); sf != nil {
			f.each = append(f.each, sf)
		}
	}
}

// valueField compiles what turns a read value into the field's: the
// transform chain, the value map, and the constant or default. index is
// as for field.
func (cp *compiler) valueField(f *cfield, fp string, fs *FieldSpec, hasPaths, index bool) {
	if len(fs.Each) > 0 {
		cp.fail(fp+".each", "only approvals takes each")
	}
	mask := cp.transforms(f, fp, fs.Transform, index)
	mask = cp.valueMap(f, fp, fs, mask)
	// The chain must end in something the field's type accepts.
	if hasPaths {
		if acc := accepts(f.def.typ); mask&acc == 0 {
			cp.fail(fp+".transform", "the transforms give %s but %s is a %s", maskName(mask), f.name, f.def.typ)
		}
	}
	if f.hasConst {
		f.constVal, f.constRaw = cp.canonical(fp+".const", f.def, fs.Const)
	}
	if f.hasDefault {
		f.defVal, f.defRaw = cp.canonical(fp+".default", f.def, fs.Default)
	}
}

// transforms compiles the transform chain into f.transforms, checking
// statically that each step accepts what the one before gives, and returns
// the kinds the chain gives. index is as for field (for the paths steps
// read).
func (cp *compiler) transforms(f *cfield, fp string, ts []Transform, index bool) int {
	mask := sStr | sList
	for i, t := range ts {
		tf := fmt.Sprintf("%s.transform[%d]", fp, i)
		ct, in, out, ok := cp.transform(tf, t, index)
		if !ok {
			mask = anyKind
			continue
		}
		if mask&in == 0 {
			cp.fail(tf, "%s needs %s but gets %s", t.Name, maskName(in), maskName(mask))
			mask = anyKind
			continue
		}
		mask = out(mask & in)
		f.transforms = append(f.transforms, ct)
	}
	return mask
}

// valueMap compiles map, map_default and unmapped, checking every target
// against the field's type, and returns the kinds the field gets after
// the map (mask, the chain's kinds, when there is no map).
func (cp *compiler) valueMap(f *cfield, fp string, fs *FieldSpec, mask int) int {
	if fs.Map != nil || fs.MapDefault != nil {
		if f.def.typ == tList {
			cp.fail(fp+".map", "map applies to single-valued fields; %s is a list", f.name)
		}
		if fs.Map == nil {
			cp.fail(fp+".map_default", "map_default without map")
		}
		f.mapping = fs.Map
		f.mapDefault = fs.MapDefault
		for _, k := range sortedKeys(fs.Map) {
			if _, err := convertFor(f.def, strValue(fs.Map[k])); err != nil {
				cp.fail(fmt.Sprintf("%s.map[%q]", fp, k), "%v", err)
			}
		}
		if fs.MapDefault != nil {
			if _, err := convertFor(f.def, strValue(*fs.MapDefault)); err != nil {
				cp.fail(fp+".map_default", "%v", err)
			}
		}
		if mask&(sStr|sList|sInt|sBool) == 0 {
			cp.fail(fp+".map", "map needs text but the transforms give %s", maskName(mask))
		}
		mask = sStr
	}
	switch fs.Unmapped {
	case "", "error":
	case "keep":
		f.keep = true
		if fs.MapDefault != nil {
			cp.fail(fp+".unmapped", "unmapped: keep and map_default exclude each other")
		}
	default:
		cp.fail(fp+".unmapped", "unknown value %q (error or keep)", fs.Unmapped)
	}
	if fs.Unmapped != "" && fs.Map == nil {
		cp.fail(fp+".unmapped", "unmapped without map")
	}
	return mask
}

// canonical converts a const or default literal from the profile to the
// field's canonical value; raw is the literal as text, for traces.
func (cp *compiler) canonical(field string, def fieldDef, x any) (val any, raw string) {
	v, raw, err := literal(x)
	if err == nil {
		val, err = convertFor(def, v)
	}
	if err != nil {
		cp.fail(field, "%v", err)
	}
	return val, raw
}

func accepts(t ftype) int {
	switch t {
	case tString:
		return anyKind
	case tInt:
		return sStr | sInt
	case tBool:
		return sStr | sBool | sInt
	case tTime:
		return sStr | sTime
	case tList:
		return sStr | sList
	}
	return 0
}

func same(m int) int { return m }

// transform compiles one step; in is the set of input kinds it accepts, out
// maps the input kinds to the output kinds. index is as for field.
func (cp *compiler) transform(tf string, t Transform, index bool) (ctransform, int, func(int) int, bool) {
	ct := ctransform{name: t.Name}
	text := sStr | sList
	toList := func(int) int { return sList }
	toStr := func(int) int { return sStr }
	hasArgs := t.Sep != "" || t.Pattern != "" || t.Group != nil || len(t.Layouts) > 0 || t.Zone != "" || t.Path != ""
	noArgs := func() bool {
		if hasArgs {
			cp.fail(tf, "%s takes no argument", t.Name)
			return false
		}
		return true
	}
	switch t.Name {
	case "trim", "lower", "upper":
		ct.op = map[string]tOp{"trim": tTrim, "lower": tLower, "upper": tUpper}[t.Name]
		return ct, text, same, noArgs()
	case "first":
		ct.op = tFirst
		return ct, text, toStr, noArgs()
	case "split", "join":
		ct.op, ct.sep = tSplit, t.Sep
		out := toList
		if t.Name == "join" {
			ct.op, out = tJoin, toStr
		}
		if t.Name == "split" && t.Sep == "" {
			cp.fail(tf+".split", "separator is empty")
			return ct, 0, nil, false
		}
		return ct, text, out, true
	case "regex":
		ct.op = tRegex
		if !cp.regexStep(tf, t, &ct) {
			return ct, 0, nil, false
		}
		return ct, text, same, true
	case "time":
		ct.op = tTimeParse
		ok := cp.timeStep(tf, t, &ct)
		return ct, sStr, func(int) int { return sTime }, ok
	case "unix_seconds", "unix_ms":
		ct.op = tUnixS
		if t.Name == "unix_ms" {
			ct.op = tUnixMS
		}
		return ct, sStr | sInt, func(int) int { return sTime }, noArgs()
	case "minus_seconds", "minus_ms":
		ct.op, ct.unit = tMinus, time.Second
		if t.Name == "minus_ms" {
			ct.unit = time.Millisecond
		}
		if t.Sep != "" || t.Pattern != "" || t.Group != nil || len(t.Layouts) > 0 || t.Zone != "" {
			cp.fail(tf, "%s takes only the path of a duration", t.Name)
			return ct, 0, nil, false
		}
		var ok bool
		if ct.path, ok = cp.path(tf+"."+t.Name, t.Path, index); !ok {
			return ct, 0, nil, false
		}
		return ct, sTime, func(int) int { return sTime }, true
	case "bool":
		ct.op = tBoolParse
		return ct, sStr | sInt | sBool, func(int) int { return sBool }, noArgs()
	case "int":
		ct.op = tIntParse
		return ct, sStr | sInt, func(int) int { return sInt }, noArgs()
	case "present":
		ct.op = tPresent
		return ct, anyKind, func(int) int { return sBool }, noArgs()
	case "":
		cp.fail(tf, "transform name is empty")
	default:
		cp.fail(tf, "unknown transform %q (known: %s)", t.Name, strings.Join(transformNames, ", "))
	}
	return ct, 0, nil, false
}

// regexStep compiles the regex step's pattern and checks its group (by
// default the first capture group, else the whole match).
func (cp *compiler) regexStep(tf string, t Transform, ct *ctransform) bool {
	if t.Pattern == "" {
		cp.fail(tf+".regex.pattern", "is empty")
		return false
	}
	re, err := regexp.Compile(t.Pattern)
	if err != nil {
		cp.fail(tf+".regex.pattern", "bad regular expression: %v", err)
		return false
	}
	ct.re = re
	if t.Group != nil {
		ct.group = *t.Group
	} else if re.NumSubexp() > 0 {
		ct.group = 1
	}
	if ct.group < 0 || ct.group > re.NumSubexp() {
		cp.fail(tf+".regex.group", "group %d does not exist: the pattern has %d capture group(s)", ct.group, re.NumSubexp())
		return false
	}
	return true
}

// timeStep checks the time step's layouts (Go layouts or names) and loads
// its zone (UTC by default). It reports every problem, not just the first.
func (cp *compiler) timeStep(tf string, t Transform, ct *ctransform) bool {
	ok := true
	if len(t.Layouts) == 0 {
		cp.fail(tf+".time.layout", "is required")
		ok = false
	}
	for i, l := range t.Layouts {
		lf := tf + ".time.layout"
		if len(t.Layouts) > 1 {
			lf = fmt.Sprintf("%s.time.layouts[%d]", tf, i)
		}
		if named, isNamed := namedLayouts[strings.ToLower(l)]; isNamed {
			l = named
		} else if err := checkLayout(l); err != nil {
			cp.fail(lf, "%v", err)
			ok = false
		}
		ct.layouts = append(ct.layouts, l)
	}
	ct.loc = time.UTC
	if t.Zone != "" {
		loc, err := time.LoadLocation(t.Zone)
		if err != nil || t.Zone == "Local" {
			cp.fail(tf+".time.zone", "unknown time zone %q (use an IANA name such as UTC or Europe/Paris)", t.Zone)
			ok = false
		} else {
			ct.loc = loc
		}
	}
	return ok
}

// checkLayout rejects Go time layouts that cannot read a timestamp: the
// reference time formatted with the layout must parse back to the same
// date.
func checkLayout(l string) error {
	if strings.TrimSpace(l) == "" {
		return fmt.Errorf("layout is empty")
	}
	ref := time.Date(2006, time.January, 2, 15, 4, 5, 0, time.FixedZone("MST", -7*3600))
	s := ref.Format(l)
	t, err := time.Parse(l, s)
	if err != nil {
		return fmt.Errorf("bad Go time layout %q: %w", l, err)
	}
	if t.Year() != 2006 || t.Month() != time.January || t.Day() != 2 {
		return fmt.Errorf("layout %q has no full date (write it with Go's reference time 2006-01-02 15:04:05, or a name: rfc3339, rfc3339nano, rfc1123, rfc1123z, datetime, dateonly)", l)
	}
	return nil
}

// literal turns a YAML const/default into a value.
func literal(x any) (value, string, error) {
	switch v := x.(type) {
	case string:
		return strValue(v), v, nil
	case bool:
		return value{k: vBool, b: v}, strconv.FormatBool(v), nil
	case int:
		return value{k: vInt, i: int64(v)}, strconv.Itoa(v), nil
	case int64:
		return value{k: vInt, i: v}, strconv.FormatInt(v, 10), nil
	case uint64:
		return strValue(strconv.FormatUint(v, 10)), strconv.FormatUint(v, 10), nil
	case float64:
		s := strconv.FormatFloat(v, 'f', -1, 64)
		return strValue(s), s, nil
	case time.Time:
		return value{k: vTime, t: v}, v.Format(time.RFC3339Nano), nil
	case []any:
		var l []string
		for _, e := range v {
			ev, _, err := literal(e)
			if err != nil || ev.k == vList {
				return value{}, "", fmt.Errorf("a list literal holds scalars only")
			}
			s, _ := ev.text()
			if s != "" {
				l = append(l, s)
			}
		}
		return listValue(l), strings.Join(l, ","), nil
	case []string:
		return listValue(v), strings.Join(v, ","), nil
	case nil:
		return value{}, "", nil
	}
	return value{}, "", fmt.Errorf("unsupported literal of type %T", x)
}

// convertFor converts v to the Go type of a canonical field and checks
// enumerations. Nothing converts to the zero value.
func convertFor(def fieldDef, v value) (any, error) {
	switch def.typ {
	case tString:
		s, err := textFor(def, v)
		if err != nil {
			return nil, err
		}
		return s, nil
	case tInt:
		switch v.k {
		case vNone:
			return 0, nil
		case vInt:
			return int(v.i), nil
		case vStr:
			i, err := parseInt(v.s)
			return int(i), err
		case vList:
			if len(v.l) == 1 {
				i, err := parseInt(v.l[0])
				return int(i), err
			}
		}
		return nil, fmt.Errorf("%s is not an integer", v.k)
	case tBool:
		switch v.k {
		case vNone:
			return false, nil
		case vBool:
			return v.b, nil
		case vInt:
			return v.i != 0, nil
		case vStr:
			return parseBool(v.s)
		case vList:
			if len(v.l) == 1 {
				return parseBool(v.l[0])
			}
		}
		return nil, fmt.Errorf("%s is not a boolean", v.k)
	case tTime:
		t, err := timeFor(v)
		if err != nil {
			return nil, err
		}
		return t, nil
	case tList:
		switch v.k {
		case vNone:
			return []string(nil), nil
		case vList:
			return v.l, nil
		case vStr:
			return []string{v.s}, nil
		}
		s, err := v.text()
		return []string{s}, err
	}
	return nil, fmt.Errorf("unsupported field type")
}

// textFor is convertFor for a string field.
func textFor(def fieldDef, v value) (string, error) {
	s, err := v.text()
	if err != nil {
		return "", err
	}
	if def.enum != nil && s != "" && !contains(def.enum, s) {
		return "", fmt.Errorf("%q is not one of %s", s, strings.Join(def.enum, ", "))
	}
	return s, nil
}

// timeFor is convertFor for a time field.
func timeFor(v value) (time.Time, error) {
	switch v.k {
	case vNone:
		return time.Time{}, nil
	case vTime:
		return v.t, nil
	case vStr:
		t, err := time.Parse(time.RFC3339Nano, v.s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (add a time transform with its layout)", v.s)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s is not a time", v.k)
}

func contains(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

// present reports whether a gjson result holds something: not absent, null,
// "", [] or {}; an object with "value"/"name" is present when that is.
func present(r gjson.Result) bool {
	switch r.Type {
	case gjson.Null:
		return false
	case gjson.String:
		return r.Str != ""
	case gjson.JSON:
		if r.IsArray() {
			return len(r.Array()) > 0
		}
		if v := objectGet(r, "value"); v.Exists() {
			return present(v)
		}
		if v := objectGet(r, "name"); v.Exists() {
			return present(v)
		}
		has := false
		r.ForEach(func(_, _ gjson.Result) bool { has = true; return false })
		return has
	}
	return r.Exists()
}
