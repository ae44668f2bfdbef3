package credentialsexchange

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
)

// loadClients returns the clients hooks are told about: clients_file's,
// then the clients config field's, which win on an id both have.
func (h *Handler) loadClients() (map[string]ClientInfo, error) {
	clients := map[string]ClientInfo{}
	if h.ClientsFile != "" {
		var err error
		if clients, err = loadClientsFile(h.ClientsFile); err != nil {
			return nil, err
		}
	}
	maps.Copy(clients, h.Clients)
	return clients, nil
}

// loadClientsFile reads clients_file.
func loadClientsFile(path string) (map[string]ClientInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("clients_file: %w", err)
	}
	clients := map[string]ClientInfo{}
	if err := json.Unmarshal(data, &clients); err != nil {
		return nil, fmt.Errorf("clients_file %s: want {\"<client_id>\": {\"name\": \"...\", \"metadata\": {\"key\": \"string value\"}, \"grant_scopes\": [\"scope\"]}}: %w", path, err)
	}
	return clients, nil
}
