"""The console's HTML, rendered on the server from node.figures' object.

Self-contained: one inline style sheet (allowed by its hash in the page's content
security policy), inline SVG charts, no script, no image, no font, no link to
anything but the console itself. Everything that comes from the database or from a
peer (origins, names, error messages) is escaped.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from node.web.console.charts import PALETTE, binned, days_between, horizontal_bars, stacked_bars
from node.web.console.text import number, percent, size, t
from protocol.entries import VERDICTS

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d2433;background:#f4f6f9}
header{background:#1d3557;color:#fff;padding:14px 24px;display:flex;flex-wrap:wrap;gap:12px 24px;align-items:baseline}
header h1{font-size:20px;margin:0}header .who{opacity:.85}
header a,header button{color:#fff}nav.window a{margin-right:10px}nav.window a[aria-current]{font-weight:700;text-decoration:none;border-bottom:2px solid #fff}
header form{display:inline;margin:0}header button{background:none;border:1px solid #fff8;border-radius:4px;padding:2px 8px;cursor:pointer;font:inherit}
main{max-width:1100px;margin:0 auto;padding:12px 24px 40px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:14px 20px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{flex:1 1 160px;border:1px solid #dde3ea;border-radius:6px;padding:8px 12px}
.card .n{font-size:24px;font-weight:700}.card .l{color:#555}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e7ec;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.chart{width:100%;height:auto;max-width:760px;display:block}.chart .grid{stroke:#e3e7ec}.chart .axis,.chart .legend{font-size:11px;fill:#444}
.chart .bar:hover rect{opacity:.8}
.note{color:#555;font-size:13px}.state-ok{color:#2a7a3b}.state-failing{color:#b35c00;font-weight:700}.state-forked{color:#b00020;font-weight:700}
.alert{background:#fdecea;border:1px solid #b00020;border-radius:6px;padding:8px 12px}
.login{max-width:520px}label{display:block;margin:10px 0 4px;font-weight:600}input[type=password]{width:100%;padding:6px;font:inherit;box-sizing:border-box}
.login button{margin-top:12px;padding:6px 16px;font:inherit}.error{color:#b00020}
"""

CSS_HASH = "sha256-" + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (f"default-src 'none'; style-src '{CSS_HASH}'; form-action 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'")

VERDICT_COLOURS = dict(zip(VERDICTS, ("#e0a526", "#2a9d8f", "#8d99ae", "#d1495b")))
SIGNAL_COLOURS = {"pdq": "#3a6ea5", "md5": "#8c6bb1", "vpdq": "#e07a2e"}


def _head(title: str, lang: str) -> str:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="referrer" content="no-referrer"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head>")


def render_login(lang: str, error: bool = False) -> str:
    other = "fr" if lang == "en" else "en"
    return (_head(t("login_title", lang), lang) + "<body><header><h1>" + escape(t("title", lang)) + "</h1>"
            f'<a href="/console?lang={other}" hreflang="{other}">{escape(t("language", lang))}</a></header>'
            '<main><section class="login"><h2>' + escape(t("login_title", lang)) + "</h2>"
            f'<p class="note">{escape(t("login_help", lang))}</p>'
            + (f'<p class="error" role="alert">{escape(t("wrong_token", lang))}</p>' if error else "")
            + f'<form method="post" action="/console/login"><input type="hidden" name="lang" value="{lang}">'
            f'<label for="token">{escape(t("token", lang))}</label>'
            '<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>'
            f'<button type="submit">{escape(t("sign_in", lang))}</button></form></section></main></body></html>')


class _Page:
    def __init__(self, figures: dict, lang: str, signed_in_by_cookie: bool):
        self.f = figures
        self.lang = lang
        self.cookie = signed_in_by_cookie
        last = figures["today"]
        first = figures["since"] or self._earliest() or last
        self.days = days_between(min(first, last), last)

    def tr(self, key: str) -> str:
        return escape(t(key, self.lang))

    def n(self, value) -> str:
        return number(value, self.lang)

    def _earliest(self) -> str | None:
        f = self.f
        dates = list(f["log"]["per_day"]) + list(f.get("cases", {}).get("per_day", {}))
        for p in f["verdicts_received"].values():
            dates += list(p["per_day"])
        if "matching" in f:
            dates += list(f["matching"]["per_day"])
        return min(dates) if dates else None

    def chart(self, chart_id: str, title: str, per_day: dict, series: list[tuple[str, str, str]]) -> str:
        labels, values, weeks = binned(per_day, self.days)
        return stacked_bars(chart_id, title, labels, values, series, self.n, t("week_of", self.lang) if weeks else "")

    # -- sections -------------------------------------------------------------------------------
    def header(self) -> str:
        f, lang = self.f, self.lang
        other = "fr" if lang == "en" else "en"
        links = []
        for window in ("7d", "30d", "all"):
            current = ' aria-current="page"' if f["window"] == window else ""
            links.append(f'<a href="/console?window={window}&amp;lang={lang}"{current}>{self.tr(window)}</a>')
        since = f'{self.tr("since")} {escape(f["since"])}' if f["since"] else self.tr("all_time")
        sign_out = (f'<form method="post" action="/console/logout"><input type="hidden" name="lang" value="{lang}">'
                    f'<button type="submit">{self.tr("sign_out")}</button></form>') if self.cookie else ""
        return (f'<header><h1>{self.tr("title")}</h1><span class="who">{escape(f["origin"])} '
                f'({self.tr(f["role"])})</span><nav class="window" aria-label="{self.tr("window")}">'
                f'{self.tr("window")}: {"".join(links)}</nav><span>{since}</span>'
                f'<a href="/console?window={f["window"]}&amp;lang={other}" hreflang="{other}">'
                f'{self.tr("language")}</a>{sign_out}</header>')

    def forks_alert(self) -> str:
        forked = [e for e in self.f["followed"] if e["forked"]]
        if not forked:
            return ""
        return ('<p class="alert" role="alert">' + "<br>".join(
            f'{self.tr("forked")}: {escape(e["origin"])} — {escape(e["fork_reason"] or "")}' for e in forked) + "</p>")

    def own_log(self) -> str:
        log = self.f["log"]
        cards = [(self.n(log["size"]), f'{t("entries", self.lang)} ({t("in_all", self.lang)})')]
        cards += [(self.n(n), t(f"kind:{kind}", self.lang)) for kind, n in sorted(log["entries"].items())]
        checkpoint = (f'<p class="note">{self.tr("last_checkpoint")}: {escape(log["last_checkpoint_at"])}</p>'
                      if log["last_checkpoint_at"] else "")
        return (f'<section id="own-log"><h2>{self.tr("own_log")}</h2>{self.cards(cards)}{checkpoint}</section>')

    def cards(self, cards: list[tuple[str, str]]) -> str:
        return '<div class="cards">' + "".join(
            f'<div class="card"><div class="n">{value}</div><div class="l">{escape(label)}</div></div>'
            for value, label in cards) + "</div>"

    def cases(self) -> str:
        c, log = self.f["cases"], self.f["log"]
        published = sum(log["fingerprints_published"].values())
        cards = self.cards([(self.n(c["opened"]), t("opened", self.lang)),
                            (self.n(c["withdrawn"]), t("withdrawn", self.lang)),
                            (self.n(published), t("fingerprints_published", self.lang)),
                            (self.n(c["totals"]["opened"]), f'{t("opened", self.lang)} ({t("in_all", self.lang)})')])
        per_day = {day: {"opened": v["opened"], "withdrawn": v["withdrawn"]} for day, v in c["per_day"].items()}
        chart = self.chart("chart-cases", t("cases_chart", self.lang), per_day,
                           [("opened", t("opened", self.lang), "#1d3557"),
                            ("withdrawn", t("withdrawn", self.lang), "#e9c46a")])
        fp_day = {day: {k.split(":", 1)[1]: n for k, n in v.items() if k.startswith("submission:")}
                  for day, v in log["per_day"].items()}
        signals = [(s, s.upper() if s != "vpdq" else "vPDQ", SIGNAL_COLOURS.get(s, "#777"))
                   for s in ("pdq", "md5", "vpdq")]
        fp_chart = self.chart("chart-fingerprints", t("fingerprints_chart", self.lang), fp_day, signals)
        return (f'<section id="cases"><h2>{self.tr("cases")}</h2>{cards}{chart}'
                f'<h3>{self.tr("fingerprints_chart")}</h3>{fp_chart}</section>')

    def creation(self) -> str:
        cr = self.f["cases"]["creation"]
        lines = [f'{self.n(cr["today"])} {self.tr("today")} · {number(cr["per_day_average"], self.lang, 1)} '
                 f'{self.tr("per_day_average")} · {self.n(cr["busiest_day"])} {self.tr("busiest_day")}']
        if cr["limits"]:
            rows = "".join(f'<tr><td>{self.tr("scope:" + limit["scope"])}</td><td class="num">{self.n(limit["limit"])}'
                           f'</td><td>{self.tr("per")} {self.n(limit["per_seconds"] // 3600)} h</td></tr>'
                           for limit in cr["limits"])
            lines.append(f'<table><thead><tr><th>{self.tr("limit")}</th><th class="num">{self.tr("cases")}</th><th>'
                         f'</th></tr></thead><tbody>{rows}</tbody></table>')
            if cr["today_of_node_budget"] is not None:
                lines.append(f'<p>{self.tr("today_of_budget")}: {percent(cr["today_of_node_budget"], self.lang)}</p>')
        else:
            lines.append(f'<p class="note">{self.tr("no_limits")}</p>')
        return f'<section id="creation"><h2>{self.tr("creation")}</h2><p>{lines[0]}</p>{"".join(lines[1:])}</section>'

    def verdicts_received(self) -> str:
        received = self.f["verdicts_received"]
        body = [f'<section id="verdicts"><h2>{self.tr("verdicts_received")}</h2>']
        if not received:
            body.append(f'<p class="note">{self.tr("no_verdicts")}</p>')
        series = [(v, t(v, self.lang), VERDICT_COLOURS[v]) for v in VERDICTS]
        head = "".join(f'<th class="num">{self.tr(v)}</th>' for v in VERDICTS)
        rows = []
        for i, (platform, p) in enumerate(sorted(received.items())):
            rows.append(f'<tr><td>{escape(self.platform_name(platform))}</td>'
                        + "".join(f'<td class="num">{self.n(p["totals"].get(v, 0))}</td>' for v in VERDICTS) + "</tr>")
            body.append(f'<h3>{self.tr("verdicts_chart")} {escape(self.platform_name(platform))}</h3>')
            body.append(self.chart(f"chart-verdicts-{i}", f'{t("verdicts_chart", self.lang)} {platform}',
                                   p["per_day"], series))
        if rows:
            body.insert(1, f'<table><thead><tr><th>{self.tr("platform_col")}</th>{head}</tr></thead>'
                           f'<tbody>{"".join(rows)}</tbody></table>')
        body.append("</section>")
        return "".join(body)

    def platform_name(self, origin: str) -> str:
        for entry in self.f["followed"]:
            if entry["origin"] == origin and (entry["display_name"] or entry["name"]):
                return f'{entry["display_name"] or entry["name"]} ({origin})'
        return origin

    def takedown(self) -> str:
        takedown = self.f["takedown"]
        if not takedown:
            return ""
        rows = []
        waits = []
        for i, (platform, r) in enumerate(takedown.items()):
            rows.append(
                f'<tr data-platform="{escape(platform)}"><td>{escape(self.platform_name(platform))}</td>'
                f'<td class="num case-rate">{percent(r["case_rate"], self.lang)}<br><span class="note">'
                f'{self.n(r["cases_removed"])} {self.tr("removed_of")} {self.n(r["cases_answered"])} '
                f'{self.tr("with_verdict")}</span></td>'
                f'<td class="num fingerprint-rate">{percent(r["fingerprint_rate"], self.lang)}<br><span class="note">'
                f'{self.n(r["fingerprints_removed"])} {self.tr("removed_of")} {self.n(r["fingerprints_matched"])} '
                f'{self.tr("matched")}</span></td></tr>')
            wait_rows = [(t(f"wait:{name}", self.lang), n) for name, n in r["first_verdict_wait"].items()]
            waits.append(f'<h3>{self.tr("wait_of")} {escape(self.platform_name(platform))}</h3>'
                         + horizontal_bars(f"chart-wait-{i}", f'{t("wait", self.lang)}: {platform}', wait_rows,
                                           PALETTE[0], self.n))
        return (f'<section id="takedown"><h2>{self.tr("takedown")}</h2><p class="note">{self.tr("takedown_note")}</p>'
                f'<table><thead><tr><th>{self.tr("platform_col")}</th><th class="num">{self.tr("case_rate")}</th>'
                f'<th class="num">{self.tr("fingerprint_rate")}</th></tr></thead><tbody>{"".join(rows)}</tbody>'
                f'</table></section><section id="wait"><h2>{self.tr("wait")}</h2>{"".join(waits)}</section>')

    def ack_alert(self) -> str:
        acks = self.f.get("acknowledgements") or {}
        alerts = []
        for p in acks.get("platforms", []):
            if p["state"] in ("late", "silent"):
                alerts.append(f'{escape(p["name"])}: {self.tr("acks_late_alert")}')
            if p["false_acknowledgements"]:
                alerts.append(f'{escape(p["name"])}: {self.tr("acks_false_alert")}')
        return '<p class="alert" role="alert">' + "<br>".join(alerts) + "</p>" if alerts else ""

    def ack_cell(self, s: dict) -> str:
        if s.get("acknowledged"):
            cell = (f'p50 {number(s["p50"], self.lang, 2)} s · p90 {number(s["p90"], self.lang, 2)} s · '
                    f'p99 {number(s["p99"], self.lang, 2)} s · {self.tr("max")} {number(s["max"], self.lang, 2)} s'
                    f'<br><span class="note">{self.n(s["acknowledged"])} / {self.n(s["entries"])}</span>')
        else:
            cell = f'<span class="note">{self.tr("acks_none")}</span>'
        if s.get("pending"):
            cell += (f'<br><span class="note">{self.n(s["pending"])} {self.tr("acks_pending")}, {self.tr("acks_oldest")} '
                     f'{number(s["oldest_pending_seconds"], self.lang)} s</span>')
        return cell

    def acknowledgements(self) -> str:
        acks = self.f.get("acknowledgements") or {}
        if not acks.get("platforms"):
            return ""
        rows = []
        for p in acks["platforms"]:
            state = {"late": "failing", "silent": "failing", "forked": "forked"}.get(p["state"], "ok")
            false = (f'<br><span class="state-forked">{self.n(p["false_acknowledgements"])} {self.tr("acks_false")}'
                     '</span>' if p["false_acknowledgements"] else "")
            rows.append(f'<tr data-origin="{escape(p["origin"])}"><td>{escape(p["name"])}<br><span class="note">'
                        f'{self.tr("acks_up_to")} {self.n(p["acknowledged_size"])}</span></td>'
                        f'<td class="state-{state}">{self.tr(p["state"])}{false}</td>'
                        f'<td class="num">{self.ack_cell(p["submissions"])}</td>'
                        f'<td class="num">{self.ack_cell(p["withdrawals"])}</td></tr>')
        return (f'<section id="acknowledgements"><h2>{self.tr("acks")}</h2><p class="note">{self.tr("acks_note")}</p>'
                f'<table><thead><tr><th>{self.tr("platform_col")}</th><th>{self.tr("state")}</th>'
                f'<th class="num">{self.tr("acks_submissions")}</th><th class="num">{self.tr("acks_withdrawals")}'
                f'</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>')

    def followed(self) -> str:
        logs = self.f["followed"]
        if not logs:
            return f'<section id="followed"><h2>{self.tr("followed")}</h2><p class="note">{self.tr("no_followed")}</p></section>'
        rows = []
        for e in logs:
            state = e["state"]
            error = ""
            if e["last_error"]:
                when = escape(e["last_error_at"] or "")
                recovered = "" if e["failures"] or e["forked"] else f' ({self.tr("earlier_error")})'
                error = f'{escape(e["last_error"])}<br><span class="note">{when}{recovered}</span>'
            sync = "–" if e["lag_seconds"] is None else f'{number(e["lag_seconds"], self.lang, 1)} {self.tr("s_ago")}'
            rows.append(f'<tr data-origin="{escape(e["origin"])}"><td>{escape(self.platform_name(e["origin"]))}</td>'
                        f'<td class="state-{state}">{self.tr(state)}</td><td class="num">{self.n(e["size"])}</td>'
                        f'<td class="num">{self.n(e["lag_entries"] or 0)}</td><td class="num">{sync}</td>'
                        f'<td class="num">{self.n(e["errors_total"])}</td><td>{error}</td></tr>')
        return (f'<section id="followed"><h2>{self.tr("followed")}</h2><table><thead><tr>'
                f'<th>{self.tr("log_col")}</th><th>{self.tr("state")}</th><th class="num">{self.tr("verified")}</th>'
                f'<th class="num">{self.tr("lag")}</th><th class="num">{self.tr("in_sync")}</th>'
                f'<th class="num">{self.tr("errors")}</th><th>{self.tr("last_error")}</th></tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></section>')

    def matching(self) -> str:
        m, log = self.f["matching"], self.f["log"]
        origins = sorted(m["matches"])
        series = [(o, o, PALETTE[i % len(PALETTE)]) for i, o in enumerate(origins)]
        cards = [(self.n(m["queries"]), t("queries", self.lang))] + [
            (self.n(n), f'{t("matches", self.lang)}: {o}') for o, n in sorted(m["matches"].items())]
        sent_day = {day: {k.split(":", 1)[1]: n for k, n in v.items() if k.startswith("feedback:")}
                    for day, v in log["per_day"].items()}
        sent = self.chart("chart-sent", t("verdicts_sent", self.lang), sent_day,
                          [(v, t(v, self.lang), VERDICT_COLOURS[v]) for v in VERDICTS])
        supp = m["suppressions"]
        supp_rows = "".join(f'<tr><td>{escape(o)}</td><td class="num">{self.n(s["total"])} '
                            f'{self.tr("suppressed_total")}</td><td class="num">{self.n(s["window"])} '
                            f'{self.tr("suppressed_window")}</td></tr>' for o, s in sorted(supp.items()))
        return (f'<section id="matching"><h2>{self.tr("matching")}</h2>{self.cards(cards)}'
                + f'<h3>{self.tr("matches_chart")}</h3>' + self.chart("chart-matches", t("matches_chart", self.lang), m["per_day"], series)
                + f'<h3>{self.tr("verdicts_sent")}</h3>{sent}<h3>{self.tr("suppressions")}</h3>'
                + (f"<table><tbody>{supp_rows}</tbody></table>" if supp_rows else f'<p class="note">{self.tr("none")}</p>')
                + "</section>" + self.index() + self.latency())

    def index(self) -> str:
        index = self.f["matching"].get("index")
        memory = self.f.get("process", {}).get("rss_bytes")
        if not index:
            return ""
        if not index.get("ready"):
            return f'<section id="index"><h2>{self.tr("index")}</h2><p>{self.tr("index_building")}</p></section>'
        cards = [(self.n(index.get(s, 0)), f'{t("index_fingerprints", self.lang)} ({s.upper() if s != "vpdq" else "vPDQ"})')
                 for s in ("pdq", "md5", "vpdq")]
        cards.append((size(index.get("index_bytes"), self.lang), t("index_memory", self.lang)))
        cards.append((size(memory, self.lang), t("process_memory", self.lang)))
        return f'<section id="index"><h2>{self.tr("index")}</h2>{self.cards(cards)}</section>'

    def latency(self) -> str:
        latency = self.f["matching"].get("latency")
        if latency is None:
            return ""
        if not latency.get("requests"):
            return f'<section id="latency"><h2>{self.tr("latency")}</h2><p class="note">{self.tr("no_requests")}</p></section>'
        cards = [(f'{number(latency[k], self.lang, 2)} ms', k.split("_")[0]) for k in ("p50_ms", "p95_ms", "p99_ms")]
        cards.append((f'{number(latency["max_ms"], self.lang, 2)} ms', t("max", self.lang)))
        cards.append((self.n(latency["requests"]), t("requests", self.lang)))
        return f'<section id="latency"><h2>{self.tr("latency")}</h2>{self.cards(cards)}</section>'

    def render(self) -> str:
        f = self.f
        sections = [self.forks_alert(), self.ack_alert(), self.own_log()]
        if "cases" in f:
            sections += [self.cases(), self.acknowledgements(), self.takedown(), self.verdicts_received(),
                         self.creation()]
        elif f["verdicts_received"]:
            sections += [self.takedown(), self.verdicts_received()]
        if "matching" in f:
            sections.append(self.matching())
        sections.append(self.followed())
        footer = f'<p class="note">{self.tr("generated")} {escape(f["generated_at"])}. {self.tr("utc_days")}</p>'
        return (_head(f'{t("title", self.lang)} · {f["origin"]}', self.lang) + "<body>" + self.header()
                + "<main>" + "".join(sections) + footer + "</main></body></html>")


def render_console(figures: dict, lang: str, signed_in_by_cookie: bool = False) -> str:
    return _Page(figures, lang, signed_in_by_cookie).render()
