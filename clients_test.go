package credentialsexchange

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadClients: clients_file's entries, with the clients field winning on
// an id both name; a malformed file is refused with its path.
func TestLoadClients(t *testing.T) {
	file := filepath.Join(t.TempDir(), "clients.json")
	if err := os.WriteFile(file, []byte(`{"a": {"name": "from file"}, "b": {"name": "file only", "grant_scopes": ["read:x"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Handler{ClientsFile: file, Clients: map[string]ClientInfo{"a": {Name: "from config"}, "c": {Name: "config only"}}}
	got, err := h.loadClients()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["a"].Name != "from config" || got["b"].Name != "file only" || got["b"].GrantScopes[0] != "read:x" || got["c"].Name != "config only" {
		t.Errorf("loadClients = %+v", got)
	}
	if err := os.WriteFile(file, []byte(`{"a": {"metadata": {"n": 1}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := h.loadClients(); err == nil || !strings.Contains(err.Error(), "clients_file "+file) {
		t.Errorf("a number in metadata: %v, want an error naming clients_file and the path", err)
	}
}
