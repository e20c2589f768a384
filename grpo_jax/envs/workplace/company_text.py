"""Vocabulary of our synthetic companies: names, organisations, event and task names, and the
sentences emails and CRM notes are made of. All of it is original to this project.

Email bodies keep the reference's convention of a literal backslash-n between lines.
"""
from __future__ import annotations

STAFF_FIRST_NAMES = (
    "Priya", "Mateo", "Hannah", "Tomasz", "Amara", "Jonas", "Mei", "Diego", "Ingrid", "Yusuf",
    "Clara", "Kwame", "Elena", "Ravi", "Marta", "Oskar", "Zainab", "Felix", "Noor", "Bruno",
    "Greta", "Hiro", "Lucia", "Samir", "Freya", "Andrei", "Imani", "Pablo", "Rosa", "Emil",
    "Ayesha", "Tariq", "Viktor", "Esther", "Kenji", "Beatriz", "Malik", "Selin", "Hugo", "Leona",
    "Dario", "Wren", "Thabo", "Ines",
)
STAFF_LAST_NAMES = (
    "Raman", "Silva", "Becker", "Nowak", "Okafor", "Lindqvist", "Watanabe", "Herrera", "Solberg",
    "Demir", "Moretti", "Asante", "Sokolova", "Menon", "Haddad", "Kowalski", "Fischer", "Boateng",
    "Castillo", "Nguyen", "Farouk", "Rossi", "Bergstrom", "Jansen", "Costa", "Duarte", "Kaur",
    "Yamamoto", "Novak", "Dubois", "Varga", "Lindholm", "Achebe", "Romero", "Keller", "Adeyemi",
    "Larsen", "Morales", "Takahashi", "Abbasi",
)
# Names of the person the assistant works for; never a staff member's first name.
USER_FIRST_NAMES = ("Robin", "Morgan", "Jamie", "Sasha", "Kai", "Rowan")
COMPANY_DOMAINS = (
    "larkspur.co", "meridianworks.com", "halcyonlabs.com", "fernhill.io", "copperfield.dev",
    "northbeam.com", "wildmoor.io", "tallgrass.co",
)

CUSTOMER_FIRST_NAMES = (
    "Adaeze", "Bianca", "Callum", "Delphine", "Eamon", "Fiona", "Gideon", "Helena", "Isaac", "Juno",
    "Keira", "Lorenzo", "Maeve", "Nikolai", "Odette", "Rafael", "Saoirse", "Tobias", "Ursula",
    "Valentina", "Wesley", "Xavier", "Yara", "Zoltan", "Anouk", "Bastian", "Cosima", "Dorian",
    "Elif", "Florian",
)
CUSTOMER_LAST_NAMES = (
    "Ashworth", "Brennan", "Calloway", "Delacroix", "Eriksen", "Fairbanks", "Galloway", "Holloway",
    "Iverson", "Jankowski", "Kingsley", "Lockhart", "Mercer", "Northcott", "Oyelaran", "Prescott",
    "Radcliffe", "Sandoval", "Thorne", "Underwood", "Vasquez", "Whitfield", "Yardley", "Zeller",
    "Abernathy", "Blackwood", "Carmichael", "Dunmore", "Everly", "Fitzgerald",
)
CUSTOMER_ORGANISATIONS = (
    "harborpoint", "quillbyte", "tidewell", "brightforge", "lumacore", "cedarline", "novaquill",
    "ironleaf", "bluefinch", "silverkite", "orbitwave", "greystone", "pinecrest", "saltmarsh",
    "redwillow", "starling", "coralbay", "emberfield",
)

EVENT_NAMES = (
    "roadmap review", "design critique", "sprint planning", "backlog grooming", "weekly sync",
    "1:1 check-in", "budget review", "hiring debrief", "vendor call", "customer feedback session",
    "quarterly planning", "architecture review", "release readiness", "incident postmortem",
    "onboarding session", "security training", "all-hands prep", "pricing workshop",
    "analytics deep dive", "product demo", "partner briefing", "content planning",
    "launch rehearsal", "team lunch", "mentoring session", "OKR check-in", "data quality audit",
    "escalation triage", "UX research readout", "board prep", "marketing sync",
    "pipeline forecast", "contract walkthrough", "calibration meeting", "office hours",
    "tech talk", "hackday kickoff", "process workshop", "risk assessment", "compliance check",
    "capacity planning", "accessibility review", "documentation sprint", "team retro",
    "strategy offsite prep",
)
TASK_VERBS = (
    "Refactor", "Document", "Migrate", "Test", "Design", "Optimize", "Review", "Prototype", "Fix",
    "Update", "Automate", "Audit",
)
TASK_OBJECTS = (
    "checkout flow", "invoice export", "search indexing", "login page", "notification service",
    "onboarding wizard", "pricing page", "data pipeline", "API rate limiter", "mobile navigation",
    "settings screen", "report builder", "image uploads", "billing webhooks", "dashboard widgets",
    "email templates", "feature flags", "audit logging", "cache layer", "accessibility labels",
)
EMAIL_TOPICS = (
    "Q4 hiring plan", "vendor renewal", "website refresh", "partner program", "support backlog",
    "holiday schedule", "travel budget", "customer survey", "brand guidelines",
    "data retention policy", "office move", "annual report",
)

# Subject templates by kind, and the body sentences that go with each kind.
SUBJECTS = {
    "progress": "Progress on {task}",
    "question": "Question about {task}",
    "blocked": "Blocked on {task}",
    "agenda": "Agenda for the {event}",
    "follow_up": "Notes from the {event}",
    "feedback": "Feedback needed on the {topic}",
    "numbers": "Latest numbers for the {topic}",
    "draft": "Draft of the {topic}",
}
SENTENCES = {
    "progress": (
        "Most of '{task}' is done and I expect to wrap it up this week.",
        "'{task}' is on track; testing starts tomorrow.",
        "I merged the first half of '{task}' today. The rest needs one more review.",
    ),
    "question": (
        "Do you have ten minutes to go over the scope of '{task}'? Two requirements look contradictory.",
        "Before I continue with '{task}', should it also cover the older accounts?",
        "Who should sign off on '{task}' once it is ready?",
    ),
    "blocked": (
        "I can't move '{task}' forward until we get access to the staging database.",
        "'{task}' is waiting on a decision from legal. Could you nudge them?",
        "The vendor API we need for '{task}' keeps timing out. Any ideas?",
    ),
    "agenda": (
        "For the {event} I'd like to cover open action items, the timeline and owners.",
        "Please add anything you want discussed at the {event} to the shared agenda.",
        "The {event} will focus on the two risks we flagged last week.",
    ),
    "follow_up": (
        "Thanks for joining the {event}. The decisions and next steps are in the shared notes.",
        "Quick recap of the {event}: we agreed to revisit the budget next month.",
        "Two action items came out of the {event}; I've assigned them in the tracker.",
    ),
    "feedback": (
        "Could you look over the latest version of the {topic} and send comments by Friday?",
        "I'd value your opinion on the {topic} before it goes to the wider team.",
        "The {topic} changed quite a bit since the last round. Does the new direction work for you?",
    ),
    "numbers": (
        "The latest figures for the {topic} are in. We are slightly ahead of plan.",
        "Numbers for the {topic} came in lower than expected; I'm digging into why.",
        "I've put the {topic} figures in a spreadsheet so we can compare them with last quarter.",
    ),
    "draft": (
        "The first draft of the {topic} is ready. Let me know what you think.",
        "Attached is a rough draft of the {topic}. It still needs a proper introduction.",
        "I rewrote the {topic} draft based on your notes; it is much shorter now.",
    ),
}
GREETINGS = ("Hi {user}", "Hello {user}", "{user}", "Hey {user}")
SIGN_OFFS = ("Best", "Thanks", "Cheers", "Regards", "Talk soon")
BODY_LINE_BREAK = "\\n"

CUSTOMER_NOTES = (
    "Sent a quote", "Scheduled a demo", "Left a voicemail", "Discussed pricing", "Shared a case study",
    "Asked for a follow-up call", "Visited their office", "Answered product questions",
)
