package mapping

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// vkind is the kind of an intermediate value while a field is evaluated.
type vkind uint8

const (
	vNone vkind = iota // absent, null, "" or an empty list
	vStr
	vList
	vTime
	vBool
	vInt
)

func (k vkind) String() string {
	switch k {
	case vNone:
		return "nothing"
	case vStr:
		return "text"
	case vList:
		return "list"
	case vTime:
		return "time"
	case vBool:
		return "boolean"
	case vInt:
		return "integer"
	}
	return "?"
}

type value struct {
	k vkind
	s string
	l []string
	t time.Time
	b bool
	i int64
}

func strValue(s string) value {
	if s == "" {
		return value{}
	}
	return value{k: vStr, s: s}
}

func listValue(l []string) value {
	if len(l) == 0 {
		return value{}
	}
	return value{k: vList, l: l}
}

// text is the value as one string, for maps, conditions and string fields.
func (v value) text() (string, error) {
	switch v.k {
	case vNone:
		return "", nil
	case vStr:
		return v.s, nil
	case vList:
		if len(v.l) == 1 {
			return v.l[0], nil
		}
		return "", fmt.Errorf("got a list of %d values where one is expected (add a join or first transform)", len(v.l))
	case vTime:
		return v.t.Format(time.RFC3339Nano), nil
	case vBool:
		return strconv.FormatBool(v.b), nil
	case vInt:
		return strconv.FormatInt(v.i, 10), nil
	}
	return "", fmt.Errorf("unknown value")
}

// maxUnwrapDepth bounds {"value": {"value": …}} nesting.
const maxUnwrapDepth = 4

// extract reads a gjson result with the documented unwrapping rules:
//
//   - absent and null are nothing; "" is nothing;
//   - numbers are normalized: 3.0 → "3", 2.50 → "2.5";
//   - true/false → "true"/"false";
//   - an object with a "value" key is its value (ServiceNow {value,link} and
//     {display_value,value}, Jira option {value}); otherwise one with a
//     "name" key is its name (Jira status, priority, component); any other
//     object is an error naming the keys to choose from;
//   - an array is a list of its elements read with the same rules (empty
//     elements dropped); nested arrays are an error.
func extract(r gjson.Result) (value, error) {
	if r.IsArray() {
		var out []string
		var err error
		r.ForEach(func(_, e gjson.Result) bool {
			if e.IsArray() {
				err = fmt.Errorf("nested arrays are not supported (use a gjson path such as a.#.b or @flatten)")
				return false
			}
			var s string
			s, err = scalar(e, 0)
			if err != nil {
				return false
			}
			if s != "" {
				out = append(out, s)
			}
			return true
		})
		if err != nil {
			return value{}, err
		}
		return listValue(out), nil
	}
	s, err := scalar(r, 0)
	if err != nil {
		return value{}, err
	}
	return strValue(s), nil
}

func scalar(r gjson.Result, depth int) (string, error) {
	switch r.Type {
	case gjson.Null:
		return "", nil
	case gjson.String:
		return r.Str, nil
	case gjson.True:
		return "true", nil
	case gjson.False:
		return "false", nil
	case gjson.Number:
		return normNumber(r), nil
	case gjson.JSON:
		if r.IsArray() {
			return "", fmt.Errorf("nested arrays are not supported")
		}
		if depth >= maxUnwrapDepth {
			return "", fmt.Errorf("objects nested too deep under \"value\"")
		}
		if v := objectGet(r, "value"); v.Exists() {
			return scalar(v, depth+1)
		}
		if v := objectGet(r, "name"); v.Exists() {
			return scalar(v, depth+1)
		}
		return "", fmt.Errorf("path leads to an object without a \"value\" or \"name\" key; name one of its keys (%s)", objectKeys(r))
	}
	return "", nil
}

// scalarText is scalar for the exact JSON text of one value, reading it
// in place without gjson Results. ok is false when scalar must decide:
// escaped strings, arrays, numbers that are not plain integers, objects
// without a "value" or "name" member, or syntax lookupKey leaves to gjson.
//
// presence says the caller only needs to know whether the value is empty
// (the field's first transform is present): an escaped string, which is
// never empty, is then returned as its JSON text instead of unescaped.
func scalarText(raw string, depth int, presence bool) (string, bool) {
	for {
		if raw == "" {
			return "", false
		}
		switch c := raw[0]; {
		case c == '"':
			if len(raw) < 2 {
				return "", false
			}
			if strings.IndexByte(raw, '\\') >= 0 {
				if presence {
					return raw, true
				}
				return parseValue(raw).Str, true
			}
			return raw[1 : len(raw)-1], true
		case c == '{':
			if depth >= maxUnwrapDepth {
				return "", false
			}
			v, n, vFound, nFound, ok := members(raw, "value", "name")
			switch {
			case !ok:
				return "", false
			case vFound:
				raw = v
			case nFound:
				raw = n
			default:
				return "", false
			}
			depth++
		case raw == "true":
			return "true", true
		case raw == "false":
			return "false", true
		case raw == "null":
			return "", true
		case c == '-' || isDigit(c):
			if isPlainInt(raw) {
				return raw, true
			}
			f, err := strconv.ParseFloat(raw, 64)
			if err != nil && !errors.Is(err, strconv.ErrRange) {
				return "", false
			}
			return normNumberText(raw, f), true
		default:
			return "", false
		}
	}
}

func objectKeys(r gjson.Result) string {
	var keys []string
	r.ForEach(func(k, _ gjson.Result) bool {
		keys = append(keys, k.String())
		return len(keys) < 8
	})
	return strings.Join(keys, ", ")
}

// normNumber renders a JSON number canonically: integral values without a
// fraction (ServiceNow sends state 3 as 3.0), others in shortest form.
func normNumber(r gjson.Result) string { return normNumberText(r.Raw, r.Num) }

// normNumberText is normNumber for a number's text and value.
func normNumberText(raw string, f float64) string {
	// Fast path: plain integers are kept as written (no float rounding for
	// large ids such as GitHub job ids).
	if isPlainInt(raw) {
		return raw
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return raw
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func isPlainInt(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	if s[0] == '-' {
		i = 1
	}
	if i == len(s) {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseBool accepts the spellings vendors use.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "t", "yes", "y", "1", "on":
		return true, nil
	case "false", "f", "no", "n", "0", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true/false, yes/no, 1/0, on/off)", s)
}

// parseInt accepts integers and integral decimals ("3", "3.0").
func parseInt(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if i, err := strconv.ParseInt(t, 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return int64(f), nil
}

// parseUnix reads seconds or milliseconds since the epoch (integer or
// decimal).
func parseUnix(s string, ms bool) (time.Time, error) {
	t := strings.TrimSpace(s)
	if i, err := strconv.ParseInt(t, 10, 64); err == nil {
		if ms {
			return time.UnixMilli(i).UTC(), nil
		}
		if i > math.MaxInt64/1_000_000_000 || i < math.MinInt64/1_000_000_000 {
			return time.Time{}, fmt.Errorf("%q is out of range", s)
		}
		return time.Unix(i, 0).UTC(), nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("%q is not a number", s)
	}
	if ms {
		f /= 1000
	}
	if math.Abs(f) > 1e11 {
		return time.Time{}, fmt.Errorf("%q is out of range", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
