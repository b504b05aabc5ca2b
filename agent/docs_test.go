package agent

import (
	"os"
	"regexp"
	"testing"
)

// The configurations shown in the docs stay valid.
func TestDocumentedConfigsAreValid(t *testing.T) {
	if _, err := LoadConfigFile("../docs/ferry.example.yml"); err != nil {
		t.Errorf("docs/ferry.example.yml: %v", err)
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
