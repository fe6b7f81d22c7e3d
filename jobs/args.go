package jobs

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ArgsError reports args that do not decode for a func. Line and Column locate
// the offending node in the YAML source (0 when unknown).
type ArgsError struct {
	// Func is the func name, when known.
	Func string
	// Line and Column are 1-based positions in the YAML source.
	Line, Column int
	// Err describes the problem.
	Err error
}

// Error formats the error as `jobs: func "name": args: line N: problem`.
func (e *ArgsError) Error() string {
	var b strings.Builder
	b.WriteString("jobs: ")
	if e.Func != "" {
		fmt.Fprintf(&b, "func %q: ", e.Func)
	}
	b.WriteString("args: ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns Err.
func (e *ArgsError) Unwrap() error { return e.Err }

// content unwraps documents and aliases and returns nil for absent or null
// args.
func content(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch n.Kind {
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case yaml.AliasNode:
			n = n.Alias
		case 0:
			return nil // a zero yaml.Node: nothing was written
		default:
			if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
				return nil
			}
			return n
		}
	}
	return nil
}

var (
	nodeType         = reflect.TypeFor[yaml.Node]()
	unmarshalerType  = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshaler  = reflect.TypeFor[encoding.TextUnmarshaler]()
	obsoleteUnmarshl = reflect.TypeFor[interface {
		UnmarshalYAML(unmarshal func(any) error) error
	}]()
)

// maxDepth bounds the walk over self-referencing alias graphs.
const maxDepth = 100

// checkKnownFields walks n against the type t that yaml.v3 will decode it
// into and reports the first mapping key that names no field of a struct. It
// does what yaml.Decoder.KnownFields(true) does, which yaml.Node.Decode lacks,
// while keeping the line numbers of the original document.
func checkKnownFields(n *yaml.Node, t reflect.Type, depth int) error {
	if depth > maxDepth {
		return nil
	}
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType {
		return nil
	}
	pt := reflect.PointerTo(t)
	if pt.Implements(unmarshalerType) || pt.Implements(obsoleteUnmarshl) ||
		(n.Kind == yaml.ScalarNode && pt.Implements(textUnmarshaler)) {
		return nil // the type decodes itself
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // yaml.v3 reports the type mismatch
		}
		fields, inlineMap := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if isMerge(k) {
				if err := checkMerge(v, t, depth); err != nil {
					return err
				}
				continue
			}
			if ft, ok := fields[k.Value]; ok {
				if err := checkKnownFields(v, ft, depth+1); err != nil {
					return err
				}
				continue
			}
			if inlineMap != nil {
				if err := checkKnownFields(v, inlineMap.Elem(), depth+1); err != nil {
					return err
				}
				continue
			}
			return &ArgsError{Line: k.Line, Column: k.Column,
				Err: fmt.Errorf("field %s not found in type %s", k.Value, t)}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if isMerge(k) {
				if err := checkMerge(v, t, depth); err != nil {
					return err
				}
				continue
			}
			if err := checkKnownFields(v, t.Elem(), depth+1); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for _, item := range n.Content {
			if err := checkKnownFields(item, t.Elem(), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" &&
		(k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

func checkMerge(v *yaml.Node, t reflect.Type, depth int) error {
	for v != nil && v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v == nil {
		return nil
	}
	if v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			if err := checkKnownFields(item, t, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return checkKnownFields(v, t, depth+1)
}

// structFields returns the YAML keys of struct t with their types, following
// yaml.v3's rules: exported fields, `yaml:"name,flags"` tags, "-" to skip,
// the lower-cased field name by default, and ",inline" structs and maps.
func structFields(t reflect.Type) (map[string]reflect.Type, reflect.Type) {
	fields := map[string]reflect.Type{}
	var inlineMap reflect.Type
	var walk func(t reflect.Type, depth int)
	walk = func(t reflect.Type, depth int) {
		if depth > maxDepth {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if f.PkgPath != "" && !f.Anonymous {
				continue // unexported
			}
			tag := f.Tag.Get("yaml")
			if tag == "" && !strings.Contains(string(f.Tag), ":") {
				tag = string(f.Tag)
			}
			if tag == "-" {
				continue
			}
			name, flags, _ := strings.Cut(tag, ",")
			inline := false
			for fl := range strings.SplitSeq(flags, ",") {
				if fl == "inline" {
					inline = true
				}
			}
			if inline {
				ft := f.Type
				if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
					ft = ft.Elem()
				}
				switch ft.Kind() {
				case reflect.Map:
					inlineMap = ft
				case reflect.Struct:
					walk(ft, depth+1)
				}
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			fields[name] = f.Type
		}
	}
	walk(t, 0)
	return fields, inlineMap
}

// typeError converts a yaml.v3 decode error into an *ArgsError whose Line is
// that of the first problem.
func typeError(err error, n *yaml.Node) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return &ArgsError{Line: n.Line, Column: n.Column, Err: err}
	}
	line := n.Line
	msgs := append([]string(nil), te.Errors...)
	if rest, ok := strings.CutPrefix(msgs[0], "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if l, perr := strconv.Atoi(num); perr == nil {
				line, msgs[0] = l, tail
			}
		}
	}
	return &ArgsError{Line: line, Err: errors.New(strings.Join(msgs, "; "))}
}
