package conductor

import "encoding/json"

// Schema types (SchemaDef.Type). Only JSON Schema is enforced.
const (
	SchemaTypeJSON     = "JSON"
	SchemaTypeAvro     = "AVRO"
	SchemaTypeProtobuf = "PROTOBUF"
)

// SchemaDef is an Orkes schema: a versioned JSON Schema document (Data)
// that workflow and task definitions name as their inputSchema or
// outputSchema. Named by a definition, it may carry Data inline or leave
// it to the registered schema of that name and version (the latest when
// Version is 0).
type SchemaDef struct {
	Name        string          `json:"name"`
	Version     int             `json:"version,omitempty"`
	Type        string          `json:"type,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	ExternalRef string          `json:"externalRef,omitempty"`
	OwnerApp    string          `json:"ownerApp,omitempty"`
	CreateTime  int64           `json:"createTime,omitempty"`
	UpdateTime  int64           `json:"updateTime,omitempty"`
	CreatedBy   string          `json:"createdBy,omitempty"`
	UpdatedBy   string          `json:"updatedBy,omitempty"`
}
