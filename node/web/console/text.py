"""The console's words, in English and French (like the victim page), and numbers
written the way each language writes them."""

from __future__ import annotations

LANGUAGES = ("en", "fr")

TEXT: dict[str, tuple[str, str]] = {
    # key: (English, French)
    "title": ("Operator console", "Console de l'opérateur"),
    "helpline": ("helpline", "ligne d'écoute"),
    "platform": ("platform", "plateforme"),
    "witness": ("witness", "témoin"),
    "window": ("Period", "Période"),
    "7d": ("7 days", "7 jours"),
    "30d": ("30 days", "30 jours"),
    "all": ("all", "tout"),
    "since": ("since", "depuis le"),
    "all_time": ("since the start", "depuis le début"),
    "generated": ("Figures as of", "Chiffres au"),
    "utc_days": ("Days are UTC days.", "Les jours sont des jours UTC."),
    "own_log": ("This node's log", "Le journal de ce nœud"),
    "entries": ("entries", "entrées"),
    "last_checkpoint": ("last checkpoint", "dernier point de contrôle"),
    "cases": ("Cases", "Dossiers"),
    "opened": ("opened", "ouverts"),
    "withdrawn": ("withdrawn", "retirés"),
    "cases_chart": ("Cases opened and withdrawn per day", "Dossiers ouverts et retirés par jour"),
    "in_all": ("in all", "au total"),
    "fingerprints_published": ("fingerprints published", "empreintes publiées"),
    "fingerprints_chart": ("Fingerprints published per day", "Empreintes publiées par jour"),
    "verdicts_received": ("Verdicts received per platform", "Décisions reçues par plateforme"),
    "verdicts_chart": ("Verdicts per day from", "Décisions par jour de"),
    "no_verdicts": ("No verdict received in this period.", "Aucune décision reçue sur cette période."),
    "takedown": ("Takedown rate", "Taux de retrait"),
    "takedown_note": ("Of the cases (fingerprints) a platform first answered in the period, the share it has "
                      "removed: cases with at least one fingerprint removed / cases with any verdict; "
                      "fingerprints removed / fingerprints matched.",
                      "Parmi les dossiers (empreintes) auxquels une plateforme a répondu pour la première fois "
                      "sur la période, la part qu'elle a retirée : dossiers avec au moins une empreinte retirée "
                      "/ dossiers avec une décision ; empreintes retirées / empreintes trouvées."),
    "platform_col": ("Platform", "Plateforme"),
    "case_rate": ("Cases: takedown rate", "Dossiers : taux de retrait"),
    "fingerprint_rate": ("Fingerprints: takedown rate", "Empreintes : taux de retrait"),
    "removed_of": ("removed of", "retirés sur"),
    "with_verdict": ("with a verdict", "avec une décision"),
    "matched": ("matched", "trouvées"),
    "wait": ("Time from publication to the first verdict", "Délai entre la publication et la première décision"),
    "wait_of": ("First verdicts of", "Premières décisions de"),
    "creation": ("Case creation rate", "Rythme de création des dossiers"),
    "today": ("today", "aujourd'hui"),
    "per_day_average": ("a day on average", "par jour en moyenne"),
    "busiest_day": ("on the busiest day", "le jour le plus chargé"),
    "limit": ("limit", "limite"),
    "per": ("per", "par"),
    "scope:address": ("one client address", "une adresse de client"),
    "scope:network": ("one network (IPv4 /24, IPv6 /56)", "un réseau (IPv4 /24, IPv6 /56)"),
    "scope:node": ("the whole node", "tout le nœud"),
    "today_of_budget": ("Opened today, share of the node's daily budget", "Ouverts aujourd'hui, part du budget quotidien du nœud"),
    "no_limits": ("No creation limit is configured on this node.",
                  "Aucune limite de création n'est configurée sur ce nœud."),
    "followed": ("Followed logs", "Journaux suivis"),
    "no_followed": ("This node follows no log.", "Ce nœud ne suit aucun journal."),
    "log_col": ("Log", "Journal"),
    "state": ("State", "État"),
    "verified": ("Verified", "Vérifiées"),
    "lag": ("Behind", "Retard"),
    "in_sync": ("In sync", "Synchronisé il y a"),
    "s_ago": ("s ago", "s"),
    "errors": ("Failed rounds", "Tours échoués"),
    "last_error": ("Last error", "Dernière erreur"),
    "earlier_error": ("earlier, recovered", "antérieure, rétabli"),
    "ok": ("ok", "ok"),
    "failing": ("failing", "en échec"),
    "forked": ("FORKED", "BIFURQUÉ"),
    "matching": ("Matching", "Correspondances"),
    "matches_chart": ("Matches per day per followed log", "Correspondances par jour et par journal suivi"),
    "queries": ("queries answered", "requêtes traitées"),
    "matches": ("matches", "correspondances"),
    "verdicts_sent": ("Verdicts sent per day", "Décisions envoyées par jour"),
    "suppressions": ("Suppressions (known false matches)", "Suppressions (fausses correspondances connues)"),
    "suppressed_total": ("suppressed in all", "supprimées au total"),
    "suppressed_window": ("in the period", "sur la période"),
    "none": ("none", "aucune"),
    "index": ("Match index", "Index de correspondance"),
    "index_fingerprints": ("fingerprints indexed", "empreintes indexées"),
    "index_memory": ("index tables in memory", "tables de l'index en mémoire"),
    "process_memory": ("node process memory (RSS)", "mémoire du processus (RSS)"),
    "index_building": ("The index is being built.", "L'index est en cours de construction."),
    "latency": ("Match latency (last requests since the node started)",
                "Latence des correspondances (dernières requêtes depuis le démarrage)"),
    "requests": ("requests", "requêtes"),
    "no_requests": ("No match request since the node started.", "Aucune requête depuis le démarrage du nœud."),
    "no_data": ("No data in this period.", "Aucune donnée sur cette période."),
    "week_of": ("week of", "semaine du"),
    "total": ("total", "total"),
    "login_title": ("Sign in to the console", "Connexion à la console"),
    "login_help": ("Paste the admin token of this node (the file admin.token in its data directory). "
                   "The console keeps you signed in for 12 hours in this browser.",
                   "Collez le jeton d'administration de ce nœud (le fichier admin.token de son répertoire "
                   "de données). La console vous garde connecté 12 heures dans ce navigateur."),
    "token": ("Admin token", "Jeton d'administration"),
    "sign_in": ("Sign in", "Se connecter"),
    "sign_out": ("Sign out", "Se déconnecter"),
    "wrong_token": ("That is not this node's admin token.", "Ce n'est pas le jeton d'administration de ce nœud."),
    "language": ("Langue : français", "Language: English"),
    "max": ("max", "max"),
    # entry kinds
    "kind:submission": ("submissions", "soumissions"),
    "kind:withdrawal": ("withdrawals", "retraits"),
    "kind:feedback": ("verdicts (feedback)", "décisions (retours)"),
    "kind:announcement": ("announcements", "annonces"),
    "kind:acknowledgement": ("acknowledgements", "accusés d'application"),
    # acknowledgements
    "acks": ("Acknowledgements: how fast each platform applies", "Accusés d'application : délai de chaque plateforme"),
    "acks_note": ("Time from this helpline's publication of each submission and withdrawal in the period to the "
                  "time the platform signed, in its own log, that it had applied it. A platform is late when an "
                  "entry has waited more than a minute.",
                  "Délai entre la publication par cette ligne d'écoute de chaque soumission et de chaque retrait "
                  "de la période et le moment où la plateforme a signé, dans son propre journal, l'avoir appliqué. "
                  "Une plateforme est en retard quand une entrée attend depuis plus d'une minute."),
    "acks_submissions": ("Submissions", "Soumissions"),
    "acks_withdrawals": ("Withdrawals", "Retraits"),
    "acks_pending": ("pending", "en attente"),
    "acks_oldest": ("oldest", "la plus ancienne"),
    "acks_none": ("none acknowledged", "aucune accusée"),
    "acks_up_to": ("acknowledged up to", "accusé jusqu'à"),
    "acks_false": ("FALSE acknowledgements", "accusés FAUX"),
    "acks_late_alert": ("has not applied entries published more than a minute ago",
                        "n'a pas appliqué des entrées publiées il y a plus d'une minute"),
    "acks_false_alert": ("acknowledged a tree this log never had (run an audit with --platform for the evidence)",
                         "a accusé un arbre que ce journal n'a jamais eu (un audit avec --platform en fait la preuve)"),
    "late": ("late", "en retard"),
    "silent": ("silent", "muette"),
    "kind:unknown": ("other entries", "autres entrées"),
    # verdicts
    "matched-pending-review": ("matched, pending review", "trouvée, en cours d'examen"),
    "removed": ("removed", "retirée"),
    "not-violating": ("not violating", "non contraire aux règles"),
    "disputed-false-match": ("disputed (false match)", "contestée (fausse correspondance)"),
    # wait buckets
    "wait:1m": ("< 1 min", "< 1 min"),
    "wait:10m": ("< 10 min", "< 10 min"),
    "wait:1h": ("< 1 h", "< 1 h"),
    "wait:6h": ("< 6 h", "< 6 h"),
    "wait:1d": ("< 1 day", "< 1 jour"),
    "wait:3d": ("< 3 days", "< 3 jours"),
    "wait:7d": ("< 7 days", "< 7 jours"),
    "wait:more": ("≥ 7 days", "≥ 7 jours"),
}


def t(key: str, lang: str) -> str:
    en, fr = TEXT[key]
    return fr if lang == "fr" else en


def choose_language(query: str | None, accept_language: str) -> str:
    """`?lang=` first, then the browser's first English or French preference; English."""
    if query in LANGUAGES:
        return query
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "en"


def number(n: float | int | None, lang: str, decimals: int = 0) -> str:
    """12,345.6 in English; 12 345,6 in French (narrow no-break space)."""
    if n is None:
        return "–"
    text = f"{n:,.{decimals}f}"
    if lang == "fr":
        text = text.replace(",", "\u202f").replace(".", ",")
    return text


def percent(rate: float | None, lang: str) -> str:
    if rate is None:
        return "–"
    return number(rate, lang, 1) + ("\u202f%" if lang == "fr" else " %")


def size(n: int | None, lang: str) -> str:
    if n is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{number(n / scale, lang, 1)} {unit if lang == 'en' else unit.replace('B', 'o')}"
    return f"{number(n, lang)} {'B' if lang == 'en' else 'o'}"
