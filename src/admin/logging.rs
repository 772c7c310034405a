//! `/logging` (Envoy `source/server/admin/logs_handler.cc`): GET (or POST without parameters)
//! lists the loggers and their levels; POST `?level=L`, `?<logger>=L` or `?paths=a:L,b:L`
//! changes them in the running process. A change needs POST, as every mutating admin path.

use super::{Admin, Reply, Request};

pub fn logging(admin: &Admin, req: &Request) -> Reply {
    if req.params.is_empty() {
        return Reply::text(200, admin.logs.list());
    }
    if req.method != http::Method::POST {
        return Reply::text(
            405,
            format!("Method {} not allowed, POST required.", req.method),
        );
    }
    match admin.logs.change(&req.params) {
        Ok(()) => Reply::text(200, admin.logs.list()),
        Err(e) => Reply::text(
            400,
            format!(
                "error: {e}\n\n\
                 usage: /logging?<name>=<level> (change single level)\n\
                 usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n\
                 usage: /logging?level=<level> (change all levels)\n\
                 levels: trace debug info warning error critical off \n\n{}",
                admin.logs.list()
            ),
        ),
    }
}
