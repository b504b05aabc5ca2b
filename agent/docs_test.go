package agent

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The configurations shown in the docs stay valid.
func TestDocumentedConfigsAreValid(t *testing.T) {
	// The example names credential files under /etc/ferry that this
	// machine does not have; any other problem is the example's.
	if _, err := LoadConfigFile("../docs/ferry.example.yml"); err != nil {
		var ces ConfigErrors
		if !errors.As(err, &ces) {
			t.Fatalf("docs/ferry.example.yml: %v", err)
		}
		for _, e := range ces {
			if !strings.Contains(e.Msg, "open /etc/ferry/") || !strings.Contains(e.Msg, "no such file") {
				t.Errorf("docs/ferry.example.yml: %v", e)
			}
		}
	}
	doc, err := os.ReadFile("../docs/rollups.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/rollups.md has no YAML example")
	}
	if _, err := ParseConfig(m[1], "docs/rollups.md"); err != nil {
		t.Errorf("docs/rollups.md example: %v", err)
	}
}
