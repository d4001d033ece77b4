-- mod_fgtest_dns: TEST ONLY. Points Prosody 0.12's legacy DNS resolver
-- (net.dns, used when lua-unbound is not installed) at the test's private
-- unbound and switches off its query jitter.
--
-- Why: the legacy resolver reads only /etc/resolv.conf, always asks port
-- 53, and waits a random 0-1 s before each query (0-2 s more on retries),
-- which makes a first s2s stanza take ~1.8 s and the tests flaky. The
-- integration tests must not touch /etc/resolv.conf, so this plugin
-- replaces the resolver's default name servers with
--     fgtest_dns_server = "127.0.N.53"   -- global option, port 53 implied
-- Loaded from test/integration/prosody-plugins via plugin_paths by
-- lib.sh's prosody_peer_setup. With lua-unbound installed Prosody uses
-- net.unbound instead; lib.sh then configures it through the standard
-- `unbound = { resolvconf = ... }` option and this plugin does nothing.
-- Never use this in production.

module:set_global();

local server = module:get_option_string("fgtest_dns_server");
if not server then
	module:log("error", "fgtest_dns_server is not set: resolver left alone");
	return;
end

if package.loaded["net.unbound"] or package.loaded["lunbound"] then
	module:log("info", "lua-unbound in use: configure it with unbound = { resolvconf = ... }");
	return;
end

local dns = require "net.dns";
-- Every net.dns resolver (net.adns makes a new one per lookup) has the
-- module's method table as its metatable: patch that table once.
local methods = getmetatable(dns.resolver());
methods.jitter = false;
methods.retry_jitter = false;
methods.adddefaultnameservers = function(self)
	self:addnameserver(server);
end
-- The shared resolver may already hold /etc/resolv.conf's servers.
dns._resolver.server = nil;
module:log("info", "legacy resolver: name server %s port 53, no jitter", server);
