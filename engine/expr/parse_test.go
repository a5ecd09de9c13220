package expr

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		s       string
		wantErr string // substring; "" means valid
	}{
		{"empty", "", ""},
		{"plain", "plain", ""},
		{"expression", "${workflow.input.x}", ""},
		{"empty expression", "${}", ""},
		{"nested", "${a.${b.${c}}}", ""},
		{"literal braces in body", "${a[?(@.x == '{}')]}", ""},
		{"escape without close", "$${abc", ""},
		{"stray close", "a}}", ""},
		{"bad JSONPath is not a syntax error", "${workflow.input[}", ""},
		{"unterminated", "${workflow.input.x", `unterminated "${" at offset 0`},
		{"unterminated later", "id-${a", `unterminated "${" at offset 3`},
		{"unterminated outer", "x ${a.${b}", `unterminated "${" at offset 2`},
		{"unterminated inner", "${a.${b}", `unterminated "${" at offset 0`},
		{"unbalanced literal brace", "${a{b}", `unterminated "${" at offset 0`},
		{"too deep", strings.Repeat("${", maxNesting+1) + strings.Repeat("}", maxNesting+1), "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.s)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate(%q) = %v, want nil", tt.s, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate(%q) = %v, want %q", tt.s, err, tt.wantErr)
			case err != nil && !errors.Is(err, ErrSyntax):
				t.Fatalf("Validate(%q) = %v, want ErrSyntax", tt.s, err)
			}
		})
	}
}

func TestValidateTemplate(t *testing.T) {
	tmpl := map[string]any{
		"http_request": map[string]any{
			"uri":     "${workflow.input.uri}",
			"headers": map[string]any{"Authorization": "Bearer ${workflow.secrets.t"},
		},
		"items":     []any{"ok", int64(1), "${bad"},
		"weird key": "${x",
		"${key":     "keys are not templates",
	}
	errs := ValidateTemplate(tmpl)
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path)
		if !errors.Is(e, ErrSyntax) || !errors.Is(e, fault.ErrInvalid) {
			t.Errorf("%v does not wrap ErrSyntax and fault.ErrInvalid", e)
		}
	}
	want := []string{"http_request.headers.Authorization", "items[2]", "['weird key']"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths = %q, want %q", paths, want)
	}
	if got, want := errs[1].Error(), `items[2]: expression syntax: invalid: unterminated "${" at offset 0`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if errs := ValidateTemplate("${ok}"); errs != nil {
		t.Errorf("valid template: %v", errs)
	}
	if errs := ValidateTemplate("${"); len(errs) != 1 || errs[0].Path != "" {
		t.Errorf("root string: %v", errs)
	}
}

func TestPathString(t *testing.T) {
	tests := []struct {
		path Path
		want string
	}{
		{Path{}, ""},
		{Path{"a"}, "a"},
		{Path{"http_request", "headers", "Content-Type"}, "http_request.headers.Content-Type"},
		{Path{"items", 2}, "items[2]"},
		{Path{0, "a"}, "[0].a"},
		{Path{"a b", "c"}, "['a b'].c"},
		{Path{"a", "it's", "x.y", ""}, `a['it\'s']['x.y']['']`},
	}
	for _, tt := range tests {
		if got := tt.path.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.path, got, tt.want)
		}
	}
}
