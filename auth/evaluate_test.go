package auth

import "testing"

func TestDecide(t *testing.T) {
	secret := Target{Type: TargetSecret, ID: "db_password"}
	res := Resource{Target: secret, Tags: []string{"team:payments"}, Creator: "alice@example.com"}
	grants := []Grant{
		{Subject: Subject{SubjectUser, "bob@example.com"}, Target: secret, Access: []Access{Update}},
		{Subject: Subject{SubjectGroup, "payments"}, Target: Target{TargetTag, "team:payments"}, Access: []Access{Read}},
		{Subject: Subject{SubjectRole, RoleWorkflowManager}, Target: secret, Access: []Access{Execute}},
		{Subject: Subject{SubjectUser, "app:billing"}, Target: Target{TargetSecret, "other"}, Access: []Access{Read}},
		{Subject: Subject{SubjectUser, "frank@example.com"}, Target: secret, Access: []Access{Create}},
		{Subject: Subject{SubjectRole, RoleMetadataManager}, Target: Target{TargetTag, "team:payments"}, Access: []Access{Execute}},
		{Subject: Subject{SubjectUser, "ivy@example.com"}, Target: secret, Access: []Access{Read}},
		{Subject: Subject{SubjectGroup, "infra"}, Target: Target{TargetTag, "team:infra"}, Access: []Access{Read}},
	}
	tests := []struct {
		name   string
		p      Principal
		access Access
		want   bool
		tag    string
	}{
		{"admin", Principal{ID: "root", Roles: []string{RoleAdmin}}, Delete, true, ""},
		{"creator", Principal{ID: "alice@example.com", Roles: []string{RoleUser}}, Delete, true, ""},
		{"direct grant", Principal{ID: "bob@example.com"}, Update, true, ""},
		{"update implies read", Principal{ID: "bob@example.com"}, Read, true, ""},
		{"update does not imply delete", Principal{ID: "bob@example.com"}, Delete, false, ""},
		{"group tag grant", Principal{ID: "carol@example.com", Groups: []string{"payments"}}, Read, true, "team:payments"},
		{"tag grant is only read", Principal{ID: "carol@example.com", Groups: []string{"payments"}}, Update, false, ""},
		{"role grant, execute implies read", Principal{ID: "dave@example.com", Roles: []string{RoleWorkflowManager}}, Read, true, ""},
		{"grant on another secret", Principal{ID: "app:billing", Roles: []string{RoleWorker}}, Read, false, ""},
		{"stranger", Principal{ID: "eve@example.com", Roles: []string{RoleUser}}, Read, false, ""},
		{"empty creator matches nobody", Principal{ID: ""}, Read, false, ""},
		{"app principal direct grant", Principal{ID: "app:billing"}, Read, false, ""},
		{"create implies nothing", Principal{ID: "frank@example.com"}, Read, false, ""},
		{"create granted", Principal{ID: "frank@example.com"}, Create, true, ""},
		{"group admin role", Principal{ID: "gina@example.com", Roles: []string{RoleUser, RoleAdmin}, Groups: []string{"ops"}}, Delete, true, ""},
		{"tag grant via role", Principal{ID: "hal@example.com", Roles: []string{RoleMetadataManager}}, Read, true, "team:payments"},
		{"direct beats tag (no tag recorded)", Principal{ID: "ivy@example.com", Groups: []string{"payments"}}, Read, true, ""},
		{"tag not carried", Principal{ID: "jo@example.com", Groups: []string{"infra"}}, Read, false, ""},
		{"role permission creates", Principal{ID: "kim@example.com", Roles: []string{RoleUser}}, Create, true, ""},
		{"role permission to create is not to read", Principal{ID: "kim@example.com", Roles: []string{RoleUser}}, Read, false, ""},
	}
	for _, tt := range tests {
		d := Decide(tt.p, tt.access, res, grants)
		if d.Allowed != tt.want || d.Tag != tt.tag {
			t.Errorf("%s: %+v, want allowed=%v tag=%q", tt.name, d, tt.want, tt.tag)
		}
	}
}

// Role permissions give access on every resource of a type, and only
// the access they name.
func TestRoleAccess(t *testing.T) {
	def := func(typ string) Resource { return Resource{Target: Target{Type: typ, ID: "x"}} }
	runs := Resource{Target: Target{Type: TargetWorkflowDef, ID: "x"}, Executions: true}
	tests := []struct {
		role   string
		access Access
		res    Resource
		want   bool
	}{
		{RoleMetadataManager, Update, def(TargetWorkflowDef), true},
		{RoleMetadataManager, Delete, def(TargetTaskDef), true},
		{RoleMetadataManager, Execute, def(TargetWorkflowDef), false},
		{RoleMetadataManager, Read, def(TargetSecret), false},
		{RoleUserReadOnly, Read, def(TargetWorkflowDef), true},
		{RoleUserReadOnly, Update, def(TargetWorkflowDef), false},
		{RoleWorkflowManager, Execute, def(TargetWorkflowDef), true},
		{RoleWorkflowManager, Delete, def(TargetWorkflow), true},
		{RoleWorkflowManager, Update, def(TargetWorkflowDef), false},
		{RoleUser, Create, def(TargetWorkflowSchedule), true},
		{RoleUser, Read, def(TargetWorkflow), false},
		{RoleWorker, Execute, def(TargetTaskDef), false},
		{RoleUnrestrictedWorker, Execute, def(TargetTaskDef), true},
		{RoleApplicationCreator, Create, def(TargetApplication), true},
		{RoleApplicationCreator, Read, def(TargetApplication), false},
		// The executions of a definition: a role that manages or views
		// definitions does not reach the data their runs carry.
		{RoleMetadataManager, Read, runs, false},
		{RoleMetadataManager, Delete, runs, false},
		{RoleMetadataManager, Update, runs, false},
		{RoleUserReadOnly, Read, runs, true},
		{RoleUserReadOnly, Execute, runs, false},
		{RoleUser, Read, runs, false},
		{RoleWorkflowManager, Read, runs, true},
	}
	for _, tt := range tests {
		d := Decide(Principal{ID: "p", Roles: []string{tt.role}}, tt.access, tt.res, nil)
		if d.Allowed != tt.want {
			t.Errorf("%s %s %s: %+v, want %v", tt.role, tt.access, tt.res.Target, d, tt.want)
		}
	}
}

func TestPermissions(t *testing.T) {
	user := Principal{ID: "u", Roles: []string{RoleUser}}
	if !user.HasPermission(PermCreateSecret) || user.HasPermission(PermAdmin) {
		t.Fatal("USER role permissions")
	}
	if Anonymous.IsAdmin() != true {
		t.Fatal("anonymous (insecure dev) is an admin")
	}
	if _, err := ParseAccess("read"); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseAccess("OWN"); err == nil {
		t.Fatal("unknown access accepted")
	}
}

// An application changes definitions only with METADATA_API, even ones it
// created or holds a grant on (Orkes); reading and executing them it may.
func TestApplicationsNeedMetadataAPI(t *testing.T) {
	def := Target{Type: TargetWorkflowDef, ID: "flow"}
	res := Resource{Target: def, Creator: "app:builder"}
	grants := []Grant{{Subject: Subject{SubjectUser, "app:ops"}, Target: def, Access: []Access{Update, Delete, Execute}}}
	tests := []struct {
		name   string
		p      Principal
		access Access
		want   bool
	}{
		{"creator app updates", Principal{ID: "app:builder"}, Update, false},
		{"creator app reads", Principal{ID: "app:builder"}, Read, true},
		{"creator app with METADATA_API updates", Principal{ID: "app:builder", Roles: []string{RoleMetadataAPI}}, Update, true},
		{"granted app deletes", Principal{ID: "app:ops", Roles: []string{RoleWorker}}, Delete, false},
		{"granted app executes", Principal{ID: "app:ops", Roles: []string{RoleWorker}}, Execute, true},
		{"granted app with METADATA_API deletes", Principal{ID: "app:ops", Roles: []string{RoleMetadataAPI}}, Delete, true},
		// A gate, not a permission: any application's creator may assign
		// it, so it must not reach definitions the application may not.
		{"other app with METADATA_API updates", Principal{ID: "app:other", Roles: []string{RoleMetadataAPI}}, Update, false},
		{"other app with METADATA_API deletes", Principal{ID: "app:other", Roles: []string{RoleMetadataAPI}}, Delete, false},
		{"other app with METADATA_API reads", Principal{ID: "app:other", Roles: []string{RoleMetadataAPI}}, Read, false},
		{"app with METADATA_MANAGER updates", Principal{ID: "app:other", Roles: []string{RoleMetadataManager}}, Update, true},
	}
	for _, tt := range tests {
		if d := Decide(tt.p, tt.access, res, grants); d.Allowed != tt.want {
			t.Errorf("%s: %+v, want allowed=%v", tt.name, d, tt.want)
		}
	}
	user := Principal{ID: "alice@example.com"}
	if d := Decide(user, Update, Resource{Target: def, Creator: user.ID}, nil); !d.Allowed {
		t.Errorf("a user who created a definition may update it without METADATA_API: %+v", d)
	}
}

// The gate is on changing definitions, not on their executions: an
// application that holds DELETE on a definition, or created it, removes
// its executions without METADATA_API, as a user does (Orkes:
// applications "manage workflow and task executions if they have access
// to the required resources" without extra roles).
func TestApplicationsRemoveExecutionsWithoutMetadataAPI(t *testing.T) {
	def := Target{Type: TargetWorkflowDef, ID: "flow"}
	runs := Resource{Target: def, Creator: "app:builder", Executions: true}
	grants := []Grant{{Subject: Subject{SubjectUser, "app:ops"}, Target: def, Access: []Access{Delete, Execute}}}
	tests := []struct {
		name   string
		p      Principal
		access Access
		want   bool
	}{
		{"granted app deletes", Principal{ID: "app:ops", Roles: []string{RoleWorker}}, Delete, true},
		{"creator app deletes", Principal{ID: "app:builder"}, Delete, true},
		{"creator app updates", Principal{ID: "app:builder"}, Update, true},
		{"other app deletes", Principal{ID: "app:other", Roles: []string{RoleMetadataAPI}}, Delete, false},
	}
	for _, tt := range tests {
		if d := Decide(tt.p, tt.access, runs, grants); d.Allowed != tt.want {
			t.Errorf("%s: %+v, want allowed=%v", tt.name, d, tt.want)
		}
	}
}

// A DOMAIN grant gives EXECUTE on every task type in the domain's queue,
// to whoever holds the grant as every grant is held (itself, its groups,
// its roles), and nothing else: not the queue without domain, not another
// domain's, not READ of the definition.
func TestDecideDomain(t *testing.T) {
	eu := Target{Type: TargetDomain, ID: "eu"}
	grants := []Grant{
		{Subject: Subject{SubjectUser, "app:eu"}, Target: eu, Access: []Access{Execute}},
		{Subject: Subject{SubjectGroup, "eu-workers"}, Target: eu, Access: []Access{Execute}},
		{Subject: Subject{SubjectRole, RoleWorker}, Target: Target{TargetDomain, "shared"}, Access: []Access{Execute}},
		{Subject: Subject{SubjectUser, "app:reader"}, Target: eu, Access: []Access{Read}},
		{Subject: Subject{SubjectUser, "app:typed"}, Target: Target{TargetTaskDef, "resize"}, Access: []Access{Execute}},
	}
	task := func(typ, domain string) Resource {
		return Resource{Target: Target{Type: TargetTaskDef, ID: typ}, Domain: domain}
	}
	tests := []struct {
		name   string
		p      Principal
		access Access
		res    Resource
		want   bool
	}{
		{"any type in the domain", Principal{ID: "app:eu"}, Execute, task("resize", "eu"), true},
		{"another type in the domain", Principal{ID: "app:eu"}, Execute, task("thumbnail", "eu"), true},
		{"not the queue without domain", Principal{ID: "app:eu"}, Execute, task("resize", ""), false},
		{"not another domain", Principal{ID: "app:eu"}, Execute, task("resize", "us"), false},
		{"not read of the definition", Principal{ID: "app:eu"}, Read, task("resize", "eu"), false},
		{"not update of the definition", Principal{ID: "app:eu"}, Update, task("resize", "eu"), false},
		{"not a workflow named like the domain", Principal{ID: "app:eu"}, Execute,
			Resource{Target: Target{TargetWorkflowDef, "resize"}, Domain: "eu"}, false},
		{"through a group", Principal{ID: "app:member", Groups: []string{"eu-workers"}}, Execute, task("resize", "eu"), true},
		{"through a role", Principal{ID: "app:any", Roles: []string{RoleWorker}}, Execute, task("resize", "shared"), true},
		{"a role's domain only", Principal{ID: "app:any", Roles: []string{RoleWorker}}, Execute, task("resize", "eu"), false},
		{"READ on a domain executes nothing", Principal{ID: "app:reader"}, Execute, task("resize", "eu"), false},
		{"a type's grant reaches its domains", Principal{ID: "app:typed"}, Execute, task("resize", "us"), true},
		{"a type's grant, not other types", Principal{ID: "app:typed"}, Execute, task("thumbnail", "us"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := Decide(tt.p, tt.access, tt.res, grants); d.Allowed != tt.want {
				t.Errorf("%+v, want allowed=%v", d, tt.want)
			}
		})
	}
}
