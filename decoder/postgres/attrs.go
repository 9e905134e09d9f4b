package postgres

import "go.opentelemetry.io/otel/attribute"

// SystemName is db.system.name for PostgreSQL.
const SystemName = "postgresql"

// OperationName is db.operation.name: from the query text, else from the
// CommandComplete tag (a statement prepared before the capture).
func (o *Operation) OperationName() string {
	if o.Query.Operation != "" {
		return o.Query.Operation
	}
	return o.Command
}

// SpanName follows the database conventions: db.query.summary, else the
// operation and its collection, else the operation, else the namespace,
// else the system.
func (o *Operation) SpanName() string {
	op := o.OperationName()
	switch {
	case o.Query.Summary != "":
		return o.Query.Summary
	case op != "" && o.Query.Collection() != "":
		return op + " " + o.Query.Collection()
	case op != "":
		return op
	case o.Namespace != "":
		return o.Namespace
	}
	return SystemName
}

// Attributes are the operation's OpenTelemetry database attributes
// (db.system.name, db.namespace, db.operation.name, db.collection.name,
// db.query.summary, db.query.text, db.operation.batch.size,
// db.response.returned_rows, db.response.status_code and error.type).
// server.address and server.port are the caller's: it knows the socket.
// Nothing in them is a literal value, a parameter or an error message.
func (o *Operation) Attributes() []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String("db.system.name", SystemName)}
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	add("db.namespace", o.Namespace)
	add("db.operation.name", o.OperationName())
	add("db.collection.name", o.Query.Collection())
	add("db.query.summary", o.Query.Summary)
	add("db.query.text", o.Query.Text)
	if o.Query.Statements > 1 {
		attrs = append(attrs, attribute.Int("db.operation.batch.size", o.Query.Statements))
	}
	if o.Rows > 0 || o.Command == "SELECT" {
		attrs = append(attrs, attribute.Int64("db.response.returned_rows", o.Rows))
	}
	if o.Error != nil && o.Error.Code != "" {
		add("db.response.status_code", o.Error.Code)
		add("error.type", o.Error.Code)
	}
	return attrs
}
