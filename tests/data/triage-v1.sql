-- A version-1 triage database made by callfuzz's version-1 code (schema.py
-- SCHEMA_VERSION = 1), dumped with sqlite3's iterdump: the upgrade tests load it.
BEGIN TRANSACTION;
CREATE TABLE buckets (
	id INTEGER NOT NULL, 
	"key" TEXT NOT NULL, 
	key_sha256 VARCHAR(64) NOT NULL, 
	title TEXT NOT NULL, 
	target VARCHAR(32) NOT NULL, 
	verdict VARCHAR(32) NOT NULL, 
	hit_count BIGINT NOT NULL, 
	first_seen DATETIME NOT NULL, 
	last_seen DATETIME NOT NULL, 
	cranelift_versions JSON NOT NULL, 
	best_case_id INTEGER NOT NULL, 
	reduced_case_id INTEGER, 
	status VARCHAR(16) NOT NULL, 
	notes TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (key_sha256), 
	FOREIGN KEY(best_case_id) REFERENCES cases (id), 
	FOREIGN KEY(reduced_case_id) REFERENCES cases (id), 
	CONSTRAINT bucket_status CHECK (status IN ('new', 'confirmed', 'reported', 'fixed', 'invalid'))
);
INSERT INTO "buckets" VALUES(1,'aarch64|compile panic|cranelift-codegen/src/isa/aarch64/abi.rs:748','0f22af141cea3276725d942657387fd5673bfa4c715a6e9b067dfdcf3e65e8fd','title of aarch64|compile panic|cranelift-codegen/src/isa/aarch64/abi.rs:748','aarch64','compile panic',1,'2026-11-29 21:17:00.577468','2026-11-29 21:17:00.577468','["0.135.8"]',1,NULL,'confirmed','[2026-11-29 21:17:00Z] (confirmed) looked at it');
INSERT INTO "buckets" VALUES(2,'x86_64|wrong result|0:i64','affdbf0f997cb7c23a8d23c5c9cf72a7accd1f979a85763fc900f90b385ccd5a','title of x86_64|wrong result|0:i64','x86_64','wrong result',2,'2026-11-29 21:17:00.577468','2026-11-29 21:17:00.577468','["0.135.8"]',1,NULL,'new','');
CREATE TABLE campaigns (
	id INTEGER NOT NULL, 
	started_at DATETIME NOT NULL, 
	ended_at DATETIME, 
	host TEXT NOT NULL, 
	cranelift_version VARCHAR(64) NOT NULL, 
	targets JSON NOT NULL, 
	flags JSON NOT NULL, 
	engine VARCHAR(32) NOT NULL, 
	seed BIGINT NOT NULL, 
	jobs INTEGER NOT NULL, 
	cases_done BIGINT NOT NULL, 
	next_seed BIGINT NOT NULL, 
	executions JSON NOT NULL, 
	verdicts JSON NOT NULL, 
	cases_per_second FLOAT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT campaign_status CHECK (status IN ('running', 'finished', 'interrupted'))
);
INSERT INTO "campaigns" VALUES(1,'2026-11-29 21:17:00.566477','2026-11-29 21:17:00.601040','box','0.135.8','["x86_64", "aarch64"]','{"fault": null}','random',1,2,10,11,'{"x86_64": 10}','{"agree": 10}',12.5,'finished');
CREATE TABLE cases (
	id INTEGER NOT NULL, 
	clif TEXT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	lines INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (sha256)
);
INSERT INTO "cases" VALUES(1,'function %f() {
block0:
    return
}
','8be2ed2744ecdb4bb7ea25abbf773204a9b416abcd1d6514a174c0d32e0e4d1e',4,'2026-11-29 21:17:00.577577');
INSERT INTO "cases" VALUES(2,'; a longer reproducer
; of the same bug
function %f() {
block0:
    return
}
','fa0836fbeed87b5557e35da2db704b8fc3123e269b9515cfeb638a76bb5b93ff',6,'2026-11-29 21:17:00.580126');
CREATE TABLE findings (
	id INTEGER NOT NULL, 
	campaign_id INTEGER, 
	case_id INTEGER NOT NULL, 
	target TEXT NOT NULL, 
	flags JSON NOT NULL, 
	verdict VARCHAR(32) NOT NULL, 
	details JSON NOT NULL, 
	blame JSON NOT NULL, 
	origin VARCHAR(32) NOT NULL, 
	seed BIGINT, 
	cranelift_version VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	bucket_id INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(campaign_id) REFERENCES campaigns (id), 
	FOREIGN KEY(case_id) REFERENCES cases (id), 
	FOREIGN KEY(bucket_id) REFERENCES buckets (id)
);
INSERT INTO "findings" VALUES(1,1,2,'x86_64 has_bmi2','["opt_level=speed"]','wrong result','{"differences": [{"index": 0, "type": "i64", "expected": "1", "actual": "2"}]}','["x86_64 has_bmi2"]','generated',7,'0.135.8','2026-11-29 21:17:00.577468',2);
INSERT INTO "findings" VALUES(2,1,1,'x86_64 has_bmi2','["opt_level=speed"]','wrong result','{"differences": [{"index": 0, "type": "i64", "expected": "1", "actual": "2"}]}','["x86_64 has_bmi2"]','generated',7,'0.135.8','2026-11-29 21:17:00.577468',2);
INSERT INTO "findings" VALUES(3,1,1,'aarch64','["opt_level=speed"]','compile panic','{"panic": {"message": "not implemented: Stack probing is unimplemented on AArch64", "location": "/x/cranelift-codegen-0.135.8/src/isa/aarch64/abi.rs:748:9"}}','["aarch64"]','generated',7,'0.135.8','2026-11-29 21:17:00.577468',1);
CREATE TABLE meta (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "meta" VALUES('schema_version','1');
CREATE INDEX ix_buckets_verdict ON buckets (verdict);
CREATE INDEX ix_buckets_target ON buckets (target);
CREATE INDEX ix_buckets_status ON buckets (status);
CREATE INDEX ix_buckets_last_seen ON buckets (last_seen);
CREATE INDEX ix_findings_campaign_id ON findings (campaign_id);
CREATE INDEX ix_findings_bucket_id ON findings (bucket_id);
COMMIT;
