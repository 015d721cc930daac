package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's configuration tables list exactly the variables the bridge
// reads, each with the default the code applies.
func TestReadmeConfigurationTableInSync(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	start := strings.Index(text, "\n## Configuration")
	end := strings.Index(text[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README has no Configuration section")
	}
	section := text[start : start+1+end]
	row := regexp.MustCompile("(?m)^\\| `([A-Z0-9_]+)` \\| ([^|]*) \\|")
	readme := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		if _, dup := readme[m[1]]; dup {
			t.Errorf("README lists %s twice", m[1])
		}
		readme[m[1]] = strings.TrimSpace(m[2])
	}
	for _, v := range variables(&Config{}) {
		def, ok := readme[v.Name]
		if !ok {
			t.Errorf("README configuration table lacks %s", v.Name)
			continue
		}
		delete(readme, v.Name)
		if v.Default == "" {
			continue // documented as unset, required, derived or computed
		}
		if !strings.HasPrefix(def, "`"+v.Default+"`") {
			t.Errorf("README default of %s is %s, the code's is `%s`", v.Name, def, v.Default)
		}
	}
	for name := range readme {
		t.Errorf("README lists %s, which the bridge does not read", name)
	}
}

// Every test the README cites as proof exists where the README says.
func TestReadmeCitedTestsExist(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile("\\[((?:`Test[A-Za-z0-9_]+`(?:, )?)+)\\]\\(([^)]+)\\)")
	name := regexp.MustCompile("`(Test[A-Za-z0-9_]+)`")
	cited := 0
	for _, m := range link.FindAllStringSubmatch(string(raw), -1) {
		src, err := os.ReadFile("../../" + m[2])
		if err != nil {
			t.Errorf("README cites %s: %v", m[2], err)
			continue
		}
		for _, n := range name.FindAllStringSubmatch(m[1], -1) {
			cited++
			if !strings.Contains(string(src), "func "+n[1]+"(") {
				t.Errorf("README cites %s in %s, which has no such test", n[1], m[2])
			}
		}
	}
	if cited < 10 {
		t.Errorf("README cites only %d tests", cited)
	}
}
