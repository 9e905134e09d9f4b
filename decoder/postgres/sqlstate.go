package postgres

// SQLSTATE codes and their condition names, as PostgreSQL's errcodes
// list names them. The class of a code is its first two characters; the
// class's name is the condition name of its "XX000" code. Only the
// conditions an auth trace is likely to care about are named one by one;
// every class is.

// Codes of the failures that say "the database refused" (the issue's
// database layer): privileges, row-level security and log-in.
const (
	CodeInsufficientPrivilege = "42501" // also a row-level security policy violation
	CodeInvalidPassword       = "28P01"
	CodeInvalidAuthorization  = "28000" // no pg_hba.conf entry, role may not log in
	CodeSyntaxError           = "42601"
)

var sqlstateClasses = map[string]string{
	"00": "successful_completion",
	"01": "warning",
	"02": "no_data",
	"03": "sql_statement_not_yet_complete",
	"08": "connection_exception",
	"09": "triggered_action_exception",
	"0A": "feature_not_supported",
	"0B": "invalid_transaction_initiation",
	"0F": "locator_exception",
	"0L": "invalid_grantor",
	"0P": "invalid_role_specification",
	"0Z": "diagnostics_exception",
	"20": "case_not_found",
	"21": "cardinality_violation",
	"22": "data_exception",
	"23": "integrity_constraint_violation",
	"24": "invalid_cursor_state",
	"25": "invalid_transaction_state",
	"26": "invalid_sql_statement_name",
	"27": "triggered_data_change_violation",
	"28": "invalid_authorization_specification",
	"2B": "dependent_privilege_descriptors_still_exist",
	"2D": "invalid_transaction_termination",
	"2F": "sql_routine_exception",
	"34": "invalid_cursor_name",
	"38": "external_routine_exception",
	"39": "external_routine_invocation_exception",
	"3B": "savepoint_exception",
	"3D": "invalid_catalog_name",
	"3F": "invalid_schema_name",
	"40": "transaction_rollback",
	"42": "syntax_error_or_access_rule_violation",
	"44": "with_check_option_violation",
	"53": "insufficient_resources",
	"54": "program_limit_exceeded",
	"55": "object_not_in_prerequisite_state",
	"57": "operator_intervention",
	"58": "system_error",
	"72": "snapshot_too_old",
	"F0": "config_file_error",
	"HV": "fdw_error",
	"P0": "plpgsql_error",
	"XX": "internal_error",
}

var sqlstateNames = map[string]string{
	"08001": "sqlclient_unable_to_establish_sqlconnection",
	"08004": "sqlserver_rejected_establishment_of_sqlconnection",
	"08006": "connection_failure",
	"08P01": "protocol_violation",
	"0A000": "feature_not_supported",
	"0LP01": "invalid_grant_operation",
	"0P000": "invalid_role_specification",
	"22001": "string_data_right_truncation",
	"22003": "numeric_value_out_of_range",
	"22012": "division_by_zero",
	"22P02": "invalid_text_representation",
	"23502": "not_null_violation",
	"23503": "foreign_key_violation",
	"23505": "unique_violation",
	"23514": "check_violation",
	"23P01": "exclusion_violation",
	"25001": "active_sql_transaction",
	"25006": "read_only_sql_transaction",
	"25P02": "in_failed_sql_transaction",
	"25P03": "idle_in_transaction_session_timeout",
	"26000": "invalid_sql_statement_name",
	"28000": "invalid_authorization_specification",
	"28P01": "invalid_password",
	"2BP01": "dependent_objects_still_exist",
	"34000": "invalid_cursor_name",
	"3D000": "invalid_catalog_name",
	"3F000": "invalid_schema_name",
	"40001": "serialization_failure",
	"40P01": "deadlock_detected",
	"42501": "insufficient_privilege",
	"42601": "syntax_error",
	"42703": "undefined_column",
	"42704": "undefined_object",
	"42710": "duplicate_object",
	"42804": "datatype_mismatch",
	"42883": "undefined_function",
	"42P01": "undefined_table",
	"42P02": "undefined_parameter",
	"42P07": "duplicate_table",
	"42P18": "indeterminate_datatype",
	"44000": "with_check_option_violation",
	"53100": "disk_full",
	"53200": "out_of_memory",
	"53300": "too_many_connections",
	"55P03": "lock_not_available",
	"57014": "query_canceled",
	"57P01": "admin_shutdown",
	"57P02": "crash_shutdown",
	"57P03": "cannot_connect_now",
	"57P05": "idle_session_timeout",
	"P0001": "raise_exception",
	"XX000": "internal_error",
}

// ValidSQLSTATE reports whether code has the shape of a SQLSTATE: five
// digits or upper-case letters. Anything else from the wire is not kept.
func ValidSQLSTATE(code string) bool {
	if len(code) != 5 {
		return false
	}
	for i := 0; i < 5; i++ {
		c := code[i]
		if !(c >= '0' && c <= '9') && !(c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// SQLSTATEName is the condition name of code ("insufficient_privilege"),
// "" when this table does not know it.
func SQLSTATEName(code string) string { return sqlstateNames[code] }

// SQLSTATEClass is the name of code's class ("invalid_authorization_specification"
// for 28P01), "" for an unknown class.
func SQLSTATEClass(code string) string {
	if len(code) < 2 {
		return ""
	}
	return sqlstateClasses[code[:2]]
}

// AuthorizationFailure reports whether code says the database refused the
// caller: a privilege or row-level security check (42501) or a failed
// log-in (class 28).
func AuthorizationFailure(code string) bool {
	return code == CodeInsufficientPrivilege || (len(code) == 5 && code[:2] == "28")
}
