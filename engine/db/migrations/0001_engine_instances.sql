-- Every engine process that has run against this database: which build, where, when it
-- started and whether it stopped cleanly. Ops use it to see which versions touched the
-- data (`yikatong db status`) and to spot engines that died without shutting down.
CREATE TABLE engine_instances (
    instance_id  uuid PRIMARY KEY,
    version      text NOT NULL CHECK (length(version) BETWEEN 1 AND 40),
    hostname     text NOT NULL CHECK (length(hostname) BETWEEN 1 AND 255),
    pid          integer NOT NULL CHECK (pid > 0),
    started_at   timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,
    CHECK (stopped_at IS NULL OR stopped_at >= started_at)
);

CREATE INDEX engine_instances_started_at ON engine_instances (started_at DESC);
