package credentialsexchange

import (
	"encoding/json"
	"fmt"
	"os"
)

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
