"""Deterministic, license-clean synthetic support tickets for the finance/healthcare triage recipe.

Every ticket is assembled from hand-written fragments (greetings, context, issue paraphrases,
details, sign-offs) and random slot values, so a tiny model has to pick up the cues of each
label instead of memorising sentences. All randomness flows through seeded `random.Random`
instances and nothing iterates over a set or dict whose order could change, so a rerun writes
byte-identical files.

Run from the repository root:  python -m recipes.catalog.build.support_data
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

FINANCE_LABELS = (
    "billing_dispute",
    "card_lost_stolen",
    "fraud_report",
    "account_access",
    "loan_inquiry",
)
HEALTHCARE_LABELS = (
    "appointment_scheduling",
    "prescription_refill",
    "insurance_claim",
    "medical_records",
    "lab_results",
)
LABELS: tuple[str, ...] = FINANCE_LABELS + HEALTHCARE_LABELS
DOMAIN_OF: dict[str, str] = {
    **{label: "finance" for label in FINANCE_LABELS},
    **{label: "healthcare" for label in HEALTHCARE_LABELS},
}
EDGE_KINDS = ("mixed_language", "ambiguous_date", "long_ticket", "cross_domain_distractor")

SYSTEM = "Classify the support ticket. Reply with exactly one label: " + ", ".join(LABELS) + "."

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "support"
TRAIN_PER_LABEL = 240
GOLDEN_PER_LABEL = 24
# Edge cases per label: ~12.5% each in train (learnable), a third each in golden (stress test).
TRAIN_EDGE_QUOTA = {
    "mixed_language": 30,
    "ambiguous_date": 30,
    "long_ticket": 30,
    "cross_domain_distractor": 30,
}
GOLDEN_EDGE_QUOTA = {
    "mixed_language": 8,
    "ambiguous_date": 8,
    "long_ticket": 8,
    "cross_domain_distractor": 6,
}
# The last HELD_OUT issue paraphrases of every label appear only in golden, so the eval set
# checks generalisation to unseen wording and can never repeat a train ticket verbatim.
HELD_OUT = 2
# String seeds are hashed with SHA-512 by `random`, independent of PYTHONHASHSEED.
TRAIN_SEED = "support-train-v1"
GOLDEN_SEED = "support-golden-v1"
PRETRAIN_SEED = "support-pretrain-v1"

# --------------------------------------------------------------------------- slot values

MERCHANTS = (
    "Northwind Grocers",
    "BlueJay Airlines",
    "Cafe Lumen",
    "StreamBox",
    "Pinecrest Hardware",
    "Orbit Mobile",
    "QuickCart",
    "Maple Fitness",
    "Harborview Hotel",
    "Sunny Side Diner",
    "PixelPlay Games",
    "Greenleaf Pharmacy Shop",
    "Urban Threads",
    "Coastal Fuel",
    "BookNook",
    "TechTrove Electronics",
    "Metro Parking",
    "FreshBox Meals",
    "CloudNine Travel",
    "Lantern Cinema",
)
ACCOUNT_TYPES = (
    "checking account",
    "savings account",
    "joint account",
    "business account",
    "student account",
    "premium checking",
    "credit card account",
    "money market account",
)
CARD_TYPES = (
    "debit card",
    "credit card",
    "Visa card",
    "Mastercard",
    "business card",
    "travel card",
    "contactless card",
    "platinum card",
)
LOAN_TYPES = (
    "mortgage",
    "vehicle loan",
    "personal loan",
    "student loan",
    "home equity line of credit",
    "small business loan",
    "car loan",
    "renovation loan",
)
DRUGS = (
    "lisinopril",
    "metformin",
    "atorvastatin",
    "levothyroxine",
    "amlodipine",
    "sertraline",
    "albuterol inhaler",
    "omeprazole",
    "losartan",
    "gabapentin",
    "montelukast",
    "escitalopram",
    "simvastatin",
    "hydrochlorothiazide",
    "prednisone",
    "insulin glargine",
)
DOSES = ("5 mg", "10 mg", "20 mg", "25 mg", "40 mg", "50 mg", "100 mg", "500 mg")
CLINICS = (
    "Riverside Family Clinic",
    "Oakwood Medical Center",
    "Lakeside Pediatrics",
    "Summit Orthopedics",
    "Cedar Grove Health",
    "Brightwater Clinic",
    "Hillcrest Medical Group",
    "Willow Creek Practice",
    "Northgate Health Center",
    "Elm Street Clinic",
)
DOCTORS = (
    "Dr. Patel",
    "Dr. Nguyen",
    "Dr. Okafor",
    "Dr. Schmidt",
    "Dr. Alvarez",
    "Dr. Kim",
    "Dr. Rossi",
    "Dr. Haddad",
    "Dr. Johansson",
    "Dr. Mensah",
    "Dr. Cohen",
    "Dr. Dubois",
)
INSURERS = (
    "Northstar Health Plan",
    "Evergreen Mutual",
    "Crestline Insurance",
    "Harbor Health",
    "Bluestone Care",
    "Pioneer Health Cover",
    "Keystone Medical Plan",
    "Aspen Health Partners",
)
LAB_TESTS = (
    "blood panel",
    "cholesterol test",
    "thyroid panel",
    "A1C test",
    "MRI",
    "X-ray",
    "urine culture",
    "vitamin D test",
    "liver function test",
    "allergy panel",
    "CBC",
    "iron studies",
)
RECORD_KINDS = (
    "full medical records",
    "vaccination history",
    "imaging reports",
    "discharge summary",
    "visit notes",
    "immunization record",
    "surgical report",
    "medication history",
)
VISIT_KINDS = (
    "yearly physical",
    "follow-up visit",
    "check-up",
    "vaccination appointment",
    "consultation",
    "physiotherapy session",
    "dermatology appointment",
    "vision check",
)
CLEAR_DATES = (
    "yesterday",
    "last Tuesday",
    "on March 14",
    "two days ago",
    "last week",
    "this morning",
    "on June 2",
    "on the 21st of September",
    "last month",
    "over the weekend",
)
# Ambiguous on purpose: day/month order, a weekday that may not match the date, two options.
AMBIGUOUS_DATES = (
    "on 03/04",
    "on 04/03",
    "around 5/6",
    "next Friday the 5th",
    "on the 1st or 2nd",
    "this Monday the 12th",
    "on 11/12",
    "on Tuesday the 3rd, I think",
    "around the 10th or 11th",
    "on 02/01",
    "last Thursday the 8th",
    "early next month, maybe the 2nd",
    "on 07.08",
    "the weekend of the 14th",
    "on 6/7 (or 7/6, not sure which format you use)",
    "the 30th or 31st",
    "next Wednesday the 9th",
    "on 10/11",
)
NAMES = (
    "Maria",
    "James",
    "Aisha",
    "Chen",
    "Olga",
    "Diego",
    "Priya",
    "Tom",
    "Fatima",
    "Lukas",
    "Sofia",
    "Kwame",
    "Hannah",
    "Mateo",
    "Yuki",
    "Noah",
    "Elena",
    "Omar",
    "Grace",
    "Pierre",
)
YEARS = ("two", "three", "five", "eight", "ten", "twelve", "fifteen", "over twenty")


def _amount(rng: random.Random) -> str:
    value = f"{rng.randint(5, 1900):,}.{rng.randint(0, 99):02d}"
    return rng.choice(("$", "$", "€", "£")) + value


def _digits(rng: random.Random) -> str:
    return f"{rng.randint(0, 9999):04d}"


SLOTS: dict[str, Sequence[str] | Callable[[random.Random], str]] = {
    "amount": _amount,
    "digits": _digits,
    "n": lambda rng: str(rng.randint(2, 9)),
    "merchant": MERCHANTS,
    "account": ACCOUNT_TYPES,
    "card": CARD_TYPES,
    "loan": LOAN_TYPES,
    "drug": DRUGS,
    "dose": DOSES,
    "clinic": CLINICS,
    "doctor": DOCTORS,
    "insurer": INSURERS,
    "test": LAB_TESTS,
    "records": RECORD_KINDS,
    "visit": VISIT_KINDS,
    "date": CLEAR_DATES,
    "name": NAMES,
    "years": YEARS,
}
_SLOT_RE = re.compile(r"\{(\w+)\}")


def fill(template: str, rng: random.Random, date_pool: Sequence[str] = CLEAR_DATES) -> str:
    """Replace every {slot} left to right, so the draw order (and output) is reproducible."""

    def pick(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "date":
            return rng.choice(date_pool)
        source = SLOTS[name]
        return source(rng) if callable(source) else rng.choice(source)

    return _SLOT_RE.sub(pick, template)


# --------------------------------------------------------------------------- label fragments


@dataclass(frozen=True)
class LabelSpec:
    """Hand-written fragments for one label; `issues` carry the main cue."""

    issues: tuple[str, ...]
    details: tuple[str, ...]
    requests: tuple[str, ...]
    dated: tuple[str, ...]  # sentences with a {date} slot, used for the ambiguous_date edge case
    foreign: dict[str, tuple[str, ...]]  # language -> native sentences with the same cue
    asides: tuple[str, ...]  # incidental mentions used as distractors inside other labels
    acks: tuple[str, ...]  # agent replies (pretraining corpus only)
    actions: tuple[str, ...]
    questions: tuple[str, ...]


SPECS: dict[str, LabelSpec] = {
    "billing_dispute": LabelSpec(
        issues=(
            "I was charged twice for the same purchase at {merchant}.",
            "There is a charge of {amount} from {merchant} on my {account} that is higher than "
            "what I actually paid.",
            "I cancelled my {merchant} subscription but you still billed me {amount} this month.",
            "My statement shows a {amount} late fee even though I paid the bill on time.",
            "{merchant} promised a refund of {amount} but it never showed up on my {account}.",
            "I'd like to dispute a {amount} charge from {merchant}; the amount is wrong.",
            "You charged me an overdraft fee of {amount} but my balance never went negative.",
            "A purchase at {merchant} was rung up as {amount}, which is not the price on my "
            "receipt.",
            "The monthly maintenance fee on my {account} is wrong, it should have been waived.",
            "Your bank billed my {account} {amount} for an annual fee I was told would be free.",
        ),
        details=(
            "The receipt clearly shows a different total.",
            "I only made one transaction, but two identical charges appear.",
            "I have the cancellation confirmation email from {merchant}.",
            "The merchant says the error is on your side, not theirs.",
            "It's the second month in a row this fee has shown up.",
        ),
        requests=(
            "Please reverse the incorrect charge.",
            "Can you open a dispute and refund the difference?",
            "I'd like the extra fee credited back to my account.",
            "Please correct the amount and send me an updated statement.",
        ),
        dated=(
            "The duplicate charge posted {date}.",
            "The wrong amount was billed {date}.",
            "I cancelled the subscription {date}, before the billing date.",
        ),
        foreign={
            "es": (
                "Me cobraron dos veces el mismo pedido.",
                "El cargo no coincide con mi factura.",
            ),
            "de": (
                "Mir wurde derselbe Betrag zweimal abgebucht.",
                "Die Abbuchung stimmt nicht mit meiner Rechnung überein.",
            ),
            "fr": (
                "J'ai été débité deux fois pour le même achat.",
                "Le montant prélevé ne correspond pas à ma facture.",
            ),
        },
        asides=(
            "My bank also charged me a strange fee this month, but I'll sort that out with "
            "them separately.",
            "I'm checking every cost closely because my card statement had a billing error "
            "last month.",
        ),
        acks=(
            "Thanks for flagging this charge, I can see why it's confusing.",
            "Sorry about the billing mix-up, let's get it fixed.",
            "I understand, nobody wants to pay for something twice.",
        ),
        actions=(
            "I've opened a dispute and you should see a temporary credit within a few business "
            "days.",
            "Our billing team will review the transaction with the merchant and email you the "
            "outcome.",
            "I've asked for the fee to be reversed and it will show on your next statement.",
        ),
        questions=(
            "Could you tell me the date and amount exactly as they appear on your statement?",
            "Do you have a receipt or cancellation confirmation you could send us?",
        ),
    ),
    "card_lost_stolen": LabelSpec(
        issues=(
            "I lost my {card} and I can't find it anywhere.",
            "My wallet was stolen with my {card} inside.",
            "I think I left my {card} at {merchant} and now it's gone.",
            "Someone stole my bag on the train, and my {card} ending in {digits} was in it.",
            "My {card} is missing, please block it right away.",
            "I need to report my {card} as lost and order a replacement.",
            "I dropped my {card} somewhere downtown and it hasn't turned up.",
            "My phone case with my {card} ending in {digits} was stolen at the gym.",
            "I can't locate my {card} since my trip and I'm worried someone has it.",
            "My purse was snatched and the {card} linked to my {account} went with it.",
        ),
        details=(
            "I haven't seen any strange purchases yet, but I want to be safe.",
            "I already searched the car and the house twice.",
            "The police gave me a report number if you need it.",
            "I still have my other card, so I can wait for the new one.",
            "I'm abroad right now, so I need the replacement sent to a hotel.",
        ),
        requests=(
            "Please freeze the card and send me a new one.",
            "Can you cancel it and ship a replacement?",
            "How fast can I get a replacement card?",
            "Please block the card before anyone uses it.",
        ),
        dated=(
            "I last used the card {date}.",
            "The theft happened {date}.",
            "I noticed the card was missing {date}.",
        ),
        foreign={
            "es": ("Perdí mi tarjeta ayer.", "Me robaron la cartera con la tarjeta dentro."),
            "de": (
                "Ich habe meine Karte verloren.",
                "Mein Portemonnaie mit der Karte wurde gestohlen.",
            ),
            "fr": ("J'ai perdu ma carte bancaire.", "On m'a volé mon portefeuille avec ma carte."),
        },
        asides=(
            "I had to replace a lost bank card last month too, so I know how annoying this can be.",
            "My wallet got stolen a while ago and the bank already sent me a new card, so "
            "that part is fine.",
        ),
        acks=(
            "I'm sorry to hear your card is missing.",
            "That sounds stressful, thank you for reporting it so quickly.",
            "Thanks for letting us know right away.",
        ),
        actions=(
            "I've frozen the card so no new purchases can go through, and a replacement will be "
            "mailed within five business days.",
            "The old card is now blocked and a new one is on its way to the address we have on "
            "file.",
            "You can also lock and unlock the card yourself from the mobile app at any time.",
        ),
        questions=(
            "Is your mailing address still the same?",
            "Have you noticed any purchases you don't recognise since the card went missing?",
        ),
    ),
    "fraud_report": LabelSpec(
        issues=(
            "There are transactions on my {account} that I never made.",
            "I see a {amount} purchase from {merchant} that I did not authorize.",
            "Someone opened a credit card in my name without my knowledge.",
            "I got a text pretending to be from your bank asking for my PIN, and I think I "
            "clicked the link.",
            "My {card} is still in my wallet but someone used it for {amount} at {merchant}.",
            "A person called claiming to be from your fraud team and I gave them a code before I "
            "realised it was a scam.",
            "There were several small charges from {merchant} that I don't recognise at all.",
            "I think my identity has been stolen, there are accounts I never opened.",
            "Money was transferred out of my {account} to someone I don't know.",
            "I received a phishing email with your logo and now there are unknown payments on my "
            "{card}.",
        ),
        details=(
            "I never shop at {merchant}, and I've never even heard of them.",
            "I have my card with me, so it must have been copied.",
            "The charges look like tests, a few cents each and then one big one.",
            "I already changed my online banking password just in case.",
            "I'm worried this is identity theft.",
        ),
        requests=(
            "Please investigate these unauthorized transactions.",
            "I want to report this as fraud and get my money back.",
            "Can you block the card and refund the fraudulent charges?",
            "Please tell me what steps to take to secure my account.",
        ),
        dated=(
            "The unauthorized charge appeared {date}.",
            "The scam call came in {date}.",
            "The money left my account {date}.",
        ),
        foreign={
            "es": (
                "Hay cargos en mi cuenta que yo no hice.",
                "Recibí un mensaje sospechoso pidiendo mis datos.",
            ),
            "de": (
                "Auf meinem Konto sind Buchungen, die ich nicht gemacht habe.",
                "Ich glaube, jemand benutzt meine Kontodaten betrügerisch.",
            ),
            "fr": (
                "Il y a des opérations sur mon compte que je n'ai pas faites.",
                "Je pense être victime d'une fraude.",
            ),
        },
        asides=(
            "My bank flagged a fraud alert on my card this morning as well, but they have "
            "already handled it.",
            "I had a scam call about my bank account last week, so I'm extra careful with "
            "everything now.",
        ),
        acks=(
            "Thank you for reporting this, you did the right thing by contacting us.",
            "I'm sorry you're dealing with this, let's secure your account first.",
            "Thanks for telling us quickly, that really helps.",
        ),
        actions=(
            "I've blocked the affected card and our fraud team will review every transaction "
            "you don't recognise.",
            "We never ask for your PIN or codes by phone or text, so please don't share them "
            "with anyone.",
            "Once the investigation is complete, confirmed fraudulent charges are refunded to "
            "your account.",
        ),
        questions=(
            "Could you list the transactions you don't recognise, with dates and amounts?",
            "Did you share any codes or passwords with the caller?",
        ),
    ),
    "account_access": LabelSpec(
        issues=(
            "I can't log in to my online banking anymore.",
            "My account got locked after I typed the wrong password a few times.",
            "The verification code never arrives on my phone, so I can't sign in.",
            "I forgot my username and the reset link doesn't work.",
            "The mobile app keeps saying my credentials are invalid even though they're correct.",
            "I got a new phone and now the two-factor authentication doesn't work.",
            "The password reset email never reaches my inbox.",
            "I'm locked out of my {account} online and can't pay my bills.",
            "Every time I try to sign in, the app shows an error and sends me back to the login "
            "screen.",
            "My security questions aren't accepted, so I can't get into my profile.",
        ),
        details=(
            "I already reinstalled the app and cleared the cache.",
            "My phone number changed recently, which might be the problem.",
            "I've tried on both my laptop and my phone.",
            "It worked fine until last week.",
            "The error message says to contact support.",
        ),
        requests=(
            "Please unlock my account.",
            "Can you reset my login so I can get back in?",
            "How do I update the phone number for the security codes?",
            "Please help me regain access.",
        ),
        dated=(
            "I was last able to log in {date}.",
            "The account was locked {date}.",
            "I changed my phone number {date}.",
        ),
        foreign={
            "es": ("No puedo entrar en mi cuenta.", "No me llega el código de verificación."),
            "de": (
                "Ich kann mich nicht mehr einloggen.",
                "Mein Konto ist gesperrt und das Passwort funktioniert nicht.",
            ),
            "fr": (
                "Je n'arrive pas à me connecter à mon compte.",
                "Je ne reçois pas le code de vérification.",
            ),
        },
        asides=(
            "I also can't log into my banking app at the moment, but that's a problem for "
            "another day.",
            "My online banking password expired this week too, so I've been resetting things "
            "everywhere.",
        ),
        acks=(
            "Sorry you're locked out, let's get you back in.",
            "I understand how frustrating login problems are.",
            "Thanks for reaching out about your sign-in issue.",
        ),
        actions=(
            "I've sent a secure reset link to the email address on file, and it stays valid for "
            "one hour.",
            "Your account is unlocked now, so you can try signing in again with your current "
            "password.",
            "If your phone number changed, we can update it after a quick identity check.",
        ),
        questions=(
            "Which device and app version are you using?",
            "Can you confirm the last four digits of the phone number on your account?",
        ),
    ),
    "loan_inquiry": LabelSpec(
        issues=(
            "I'm interested in applying for a {loan} and would like to know the current rates.",
            "What would the monthly payment be on a {loan} of {amount}?",
            "Can I make extra payments on my {loan} without a penalty?",
            "I'd like to refinance my {loan} to get a lower interest rate.",
            "What documents do I need to apply for a {loan}?",
            "Could you tell me the payoff amount for my {loan}?",
            "I applied for a {loan} two weeks ago and haven't heard back about approval.",
            "Is it possible to extend the term of my {loan} to lower the payments?",
            "I want to borrow {amount} for a {loan}, what interest rate would I qualify for?",
            "Do you offer pre-approval for a {loan}, and how long does it take?",
        ),
        details=(
            "My credit score is around 720.",
            "I've had my {account} with you for {years} years.",
            "We are planning to buy a house next spring.",
            "I'd prefer a fixed rate if possible.",
            "My income went up recently, so I might qualify for better terms.",
        ),
        requests=(
            "Could someone from the lending team contact me?",
            "Please send me the loan terms by email.",
            "I'd like to book a call with a loan officer.",
            "Can you explain the options?",
        ),
        dated=(
            "I submitted the loan application {date}.",
            "I'd like the loan to close {date}.",
            "My next loan payment is due {date}.",
        ),
        foreign={
            "es": (
                "Quisiera información sobre un préstamo.",
                "¿Cuál es la tasa de interés actual para una hipoteca?",
            ),
            "de": (
                "Ich interessiere mich für einen Kredit.",
                "Wie hoch ist der aktuelle Zinssatz für eine Baufinanzierung?",
            ),
            "fr": (
                "Je voudrais des informations sur un prêt.",
                "Quel est le taux d'intérêt actuel pour un prêt immobilier ?",
            ),
        },
        asides=(
            "We're in the middle of refinancing our mortgage, which is why I'm watching every "
            "expense.",
            "I'm also waiting to hear back about a car loan, so money is tight right now.",
        ),
        acks=(
            "Thanks for your interest in borrowing with us.",
            "Happy to help you with your loan question.",
            "Good question, loan terms can be confusing.",
        ),
        actions=(
            "A loan officer will call you within two business days to go over rates and "
            "eligibility.",
            "Extra payments go straight to the principal, and most of our loans have no "
            "prepayment penalty.",
            "You'll usually need proof of income, a photo ID and recent bank statements to apply.",
        ),
        questions=(
            "Roughly how much would you like to borrow, and over what term?",
            "What is the best time for a loan officer to call you?",
        ),
    ),
    "appointment_scheduling": LabelSpec(
        issues=(
            "I'd like to book an appointment with {doctor} for a {visit}.",
            "Can I reschedule my {visit} at {clinic} to another day?",
            "I need to cancel my appointment at {clinic} this week.",
            "Are there any openings with {doctor} next week?",
            "I'm a new patient and would like to schedule a first {visit}.",
            "Could you move my {visit} to a morning slot?",
            "I need to see a doctor soon, is there an available slot at {clinic}?",
            "My {visit} with {doctor} clashes with work, can we find a different time?",
            "Is it possible to book a telehealth visit instead of coming in to {clinic}?",
            "Please put me on the waiting list for an earlier appointment with {doctor}.",
        ),
        details=(
            "I can only come in after 4 pm on weekdays.",
            "Mornings work best for me.",
            "It's for my daughter, she needs a check-up before school starts.",
            "I'm flexible on the doctor, anyone at the practice is fine.",
            "Last time the online booking page wouldn't let me pick a time.",
        ),
        requests=(
            "Please let me know what times are available.",
            "Can you confirm the new appointment by email?",
            "Please call me back to set a time.",
            "Let me know if a slot opens up.",
        ),
        dated=(
            "I'd like to come in {date}.",
            "My current appointment is {date}.",
            "Could we do it {date} instead?",
        ),
        foreign={
            "es": ("Necesito una cita con el médico.", "¿Puedo cambiar mi cita a otro día?"),
            "de": ("Ich brauche einen Termin beim Arzt.", "Kann ich meinen Termin verschieben?"),
            "fr": (
                "J'ai besoin d'un rendez-vous chez le médecin.",
                "Est-ce que je peux déplacer mon rendez-vous ?",
            ),
        },
        asides=(
            "I'm writing from the waiting room at {clinic} before my check-up, so sorry for any "
            "typos.",
            "I have a doctor's appointment later today, so I'd prefer an email over a call.",
        ),
        acks=(
            "Thanks for getting in touch about your appointment.",
            "Happy to help you find a time that works.",
            "No problem, plans change.",
        ),
        actions=(
            "I've found an opening next Tuesday at 9:30 and will hold it for you until tomorrow.",
            "Your appointment has been moved and you'll receive a confirmation text shortly.",
            "I've added you to the waiting list and we'll call you if an earlier slot opens.",
        ),
        questions=(
            "Which days and times work best for you?",
            "Is this a new concern or a follow-up on a previous visit?",
        ),
    ),
    "prescription_refill": LabelSpec(
        issues=(
            "I need a refill of my {drug} {dose}.",
            "I'm almost out of {drug} and the pharmacy says the prescription has expired.",
            "Can {doctor} renew my prescription for {drug}?",
            "The pharmacy hasn't received the refill request for my {drug}.",
            "I have only {n} pills of {drug} left, please send a new prescription.",
            "Could you authorize another refill of {drug} {dose} so I don't run out?",
            "My {drug} prescription needs to be renewed before I travel.",
            "Please send my {drug} refill to a different pharmacy.",
            "I ran out of my {drug} and need the prescription renewed today if possible.",
            "Can I get a 90-day supply of {drug} instead of the monthly refill?",
        ),
        details=(
            "I take it every day for my blood pressure.",
            "The pharmacy told me they need approval from the doctor.",
            "The dose hasn't changed since my last visit.",
            "I've been on this medication for {years} years.",
            "My usual pharmacy is closed this week.",
        ),
        requests=(
            "Please send the refill to my pharmacy.",
            "Can you approve the renewal?",
            "Let me know when it's ready to pick up.",
            "Please process the refill as soon as possible.",
        ),
        dated=(
            "I'll run out of pills {date}.",
            "My last refill was {date}.",
            "I leave for my trip {date} and need the medication before then.",
        ),
        foreign={
            "es": ("Necesito renovar mi receta.", "Se me están acabando las pastillas."),
            "de": (
                "Ich brauche ein neues Rezept für meine Medikamente.",
                "Meine Tabletten gehen bald aus.",
            ),
            "fr": (
                "J'ai besoin de renouveler mon ordonnance.",
                "Je n'ai presque plus de médicaments.",
            ),
        },
        asides=(
            "I just picked up my {drug} refill at the pharmacy, so that part is taken care of.",
            "I paid for my prescription refill with this card yesterday without any problem.",
        ),
        acks=(
            "Thanks for reaching out about your medication.",
            "Let's make sure you don't run out.",
            "I understand, running low on medication is worrying.",
        ),
        actions=(
            "I've sent the refill request to your doctor, and approvals usually take one to two "
            "business days.",
            "Once it's approved, the prescription goes straight to your pharmacy and they'll text "
            "you when it's ready.",
            "If you run out before then, your pharmacist may be able to give you a short "
            "emergency supply.",
        ),
        questions=(
            "Which pharmacy would you like us to send it to?",
            "Can you confirm the medication name and dose on the bottle?",
        ),
    ),
    "insurance_claim": LabelSpec(
        issues=(
            "My claim with {insurer} for my {visit} was denied.",
            "I haven't been reimbursed for the {amount} I paid at {clinic}.",
            "The explanation of benefits says the {test} isn't covered, but it should be.",
            "What is the status of my insurance claim for the {visit} at {clinic}?",
            "{insurer} says the claim was submitted with the wrong billing code.",
            "I was told my {visit} would be covered, but {insurer} rejected the claim.",
            "I need to resubmit a claim for my {test}; the first one was returned.",
            "The insurance paid only part of the {amount} bill and I don't understand why.",
            "My claim for {amount} has been pending for over {n} weeks.",
            "Can you send my insurer the itemized bill so they can process the claim?",
        ),
        details=(
            "My policy number is on the card I uploaded.",
            "The provider is in network according to the insurer's website.",
            "I got pre-authorization before the procedure.",
            "I already paid the bill out of pocket.",
            "The denial letter mentions a missing referral.",
        ),
        requests=(
            "Please resubmit the claim.",
            "Can you explain why the claim was denied?",
            "I'd like to file an appeal.",
            "Please let me know what documents you need to process the reimbursement.",
        ),
        dated=(
            "The claim was submitted {date}.",
            "I received the denial letter {date}.",
            "The treatment took place {date}.",
        ),
        foreign={
            "es": (
                "Mi reclamación al seguro fue rechazada.",
                "Todavía no me han reembolsado la consulta.",
            ),
            "de": (
                "Meine Versicherung hat den Antrag auf Kostenerstattung abgelehnt.",
                "Ich warte noch auf die Erstattung.",
            ),
            "fr": (
                "Ma demande de remboursement a été refusée par l'assurance.",
                "J'attends toujours le remboursement de ma mutuelle.",
            ),
        },
        asides=(
            "My health insurance claim is also still pending, but that's with a different company.",
            "I'm waiting for {insurer} to reimburse a doctor's visit, which is why I'm watching "
            "my balance.",
        ),
        acks=(
            "Thanks for your patience with this claim.",
            "I'm sorry the claim didn't go through the first time.",
            "Claims can be confusing, I'm happy to help.",
        ),
        actions=(
            "I've asked our billing office to resubmit the claim with the corrected code.",
            "Claims usually take two to four weeks, and you'll receive an explanation of benefits "
            "once it's processed.",
            "If the denial stands, you have the right to appeal, and we can send the supporting "
            "notes.",
        ),
        questions=(
            "Could you share the claim number from your explanation of benefits?",
            "Which insurance plan and member ID should we use?",
        ),
    ),
    "medical_records": LabelSpec(
        issues=(
            "I need a copy of my {records} from {clinic}.",
            "Please transfer my {records} to my new doctor, {doctor}.",
            "There is a mistake in my chart and I'd like it corrected.",
            "How do I request my {records} for a specialist referral?",
            "My school needs my {records}, can you email them?",
            "I'm moving and need all my {records} sent to a clinic in another city.",
            "Could you fax my {records} to {doctor}'s office?",
            "I want to download my {records}, but they aren't in the patient portal.",
            "My chart lists an allergy I don't have; please update my medical record.",
            "I'd like a printed copy of my {records} for my own files.",
        ),
        details=(
            "I signed the release form last time I was in.",
            "The specialist needs them before my consultation.",
            "Only the last two years are needed.",
            "I can pick them up in person if that's easier.",
            "My date of birth is on file with the clinic.",
        ),
        requests=(
            "Please send the records as soon as possible.",
            "What form do I need to fill out?",
            "Can you confirm once they've been sent?",
            "Let me know if there's a fee for copies.",
        ),
        dated=(
            "The specialist appointment is {date}, so I need the records before then.",
            "I requested the records {date} and haven't received them.",
            "My last visit, the one I need notes from, was {date}.",
        ),
        foreign={
            "es": (
                "Necesito una copia de mi historial médico.",
                "¿Pueden enviar mis expedientes a mi nuevo médico?",
            ),
            "de": (
                "Ich brauche eine Kopie meiner Krankenakte.",
                "Können Sie meine Unterlagen an meinen neuen Arzt schicken?",
            ),
            "fr": (
                "J'ai besoin d'une copie de mon dossier médical.",
                "Pouvez-vous transférer mon dossier à mon nouveau médecin ?",
            ),
        },
        asides=(
            "I've been collecting my medical records for a new doctor anyway, so I'm doing all "
            "my paperwork today.",
            "My clinic just sent my {records} to a specialist, so I'm catching up on admin.",
        ),
        acks=(
            "Thanks for your request.",
            "Happy to help with your records.",
            "Of course, you have every right to your health information.",
        ),
        actions=(
            "Records requests are processed within five business days once we have a signed "
            "release form.",
            "You can also download most visit notes and test results from the patient portal.",
            "I've passed the correction request to your care team, who will review your chart.",
        ),
        questions=(
            "Where should we send the records, and in what format?",
            "Could you confirm your date of birth so we can find your file?",
        ),
    ),
    "lab_results": LabelSpec(
        issues=(
            "Are the results of my {test} back yet?",
            "I had my {test} done at {clinic} and still haven't heard anything about the results.",
            "My {test} results show a value flagged as high; what does that mean?",
            "Can {doctor} explain my {test} results to me?",
            "The portal says my {test} results are ready, but I can't see any numbers.",
            "I think my lab results were sent to the wrong doctor.",
            "How long does it usually take to get {test} results?",
            "My {test} came back abnormal and nobody has called me.",
            "I'd like someone to go over my {test} results with me.",
            "Could you send my {test} results to {doctor} before my next visit?",
        ),
        details=(
            "I'm a bit anxious because I haven't heard anything.",
            "The lab said they sent the results to the clinic.",
            "I fasted before the blood draw like I was told.",
            "My doctor mentioned she wanted to repeat the test if anything looked off.",
            "I'd prefer the results by email.",
        ),
        requests=(
            "Please let me know when the results are available.",
            "Could someone call me to explain the numbers?",
            "Can you send me a copy of the results?",
            "Please have the doctor review them.",
        ),
        dated=(
            "The blood was drawn {date}.",
            "I was told the results would be ready {date}.",
            "I did the test {date} at the lab.",
        ),
        foreign={
            "es": (
                "¿Ya están los resultados de mis análisis?",
                "No entiendo los resultados de laboratorio.",
            ),
            "de": ("Sind meine Laborergebnisse schon da?", "Ich verstehe meine Blutwerte nicht."),
            "fr": (
                "Est-ce que mes résultats d'analyse sont disponibles ?",
                "Je ne comprends pas mes résultats de laboratoire.",
            ),
        },
        asides=(
            "I'm also still waiting on blood test results from my doctor, so I'm a bit on edge.",
            "My {test} results came back fine this week, so at least that's one less worry.",
        ),
        acks=(
            "Thanks for checking in about your results.",
            "I understand waiting for results can be nerve-racking.",
            "Good question, lab reports can be hard to read.",
        ),
        actions=(
            "Most results are released within three business days, and your doctor reviews them "
            "first.",
            "I've sent a message to your care team asking them to call you about the flagged "
            "value.",
            "Once they're signed off, the results will appear in the patient portal with notes.",
        ),
        questions=(
            "Which test was it, and where was the sample taken?",
            "Would you prefer a phone call or a portal message when they're ready?",
        ),
    ),
}

# --------------------------------------------------------------------------- generic fragments

GREETINGS = (
    "Hi,",
    "Hello,",
    "Hello there,",
    "Good morning,",
    "Good afternoon,",
    "Hi team,",
    "Dear support,",
    "Hey,",
    "To whom it may concern,",
    "Hi there,",
)
CONTEXT = {
    "finance": (
        "I've been a customer for {years} years.",
        "I have a {account} with you.",
        "I'm writing about my {account}.",
        "Quick question about my {account}.",
        "I mostly bank through your mobile app.",
    ),
    "healthcare": (
        "I'm a patient at {clinic}.",
        "My doctor is {doctor}.",
        "I've been seeing {doctor} for {years} years.",
        "I'm writing on behalf of my elderly mother.",
        "I'm a patient of {doctor} at {clinic}.",
    ),
}
BACKGROUND = {
    "finance": (
        "I've been a customer for {years} years and have never had an issue like this before.",
        "I use the mobile app most days and normally everything works without a problem.",
        "I'm travelling for work at the moment, which makes all of this harder to sort out.",
        "My partner and I share the {account}, so this affects both of us.",
        "I run a small business and keep a close eye on every transaction.",
        "I set up alerts on my {account} a while ago, which is how I noticed.",
        "Money is tight this month, so I really need this resolved quickly.",
    ),
    "healthcare": (
        "I've been a patient at {clinic} for {years} years and the staff have always been great.",
        "I have a chronic condition, so I depend on things running smoothly.",
        "I work shifts at a hospital myself, so my schedule is unpredictable.",
        "My regular doctor, {doctor}, is on leave at the moment.",
        "I care for my father as well, so I juggle a lot of appointments.",
        "I recently switched to {insurer}, which may be part of the confusion.",
        "I prefer to handle things by email because phone lines are always busy.",
    ),
}
TRIED = (
    "I already tried calling the helpline, but I waited for over {n}0 minutes and gave up.",
    "I checked the FAQ on your website, but it didn't cover my situation.",
    "I sent an email about this earlier and haven't had a reply.",
    "I spoke to someone at the front desk who told me to write in instead.",
    "I tried the chat assistant, but it kept sending me in circles.",
)
IMPACT = (
    "This is quite stressful and I'd appreciate a quick answer.",
    "I'd like to get this sorted before the end of the week.",
    "It's not urgent, but I don't want it to drag on.",
    "I'm a little frustrated, to be honest, but I'm sure it can be fixed.",
    "Any help you can give would be much appreciated.",
)
SIGNOFFS = (
    "Thanks,\n{name}",
    "Thank you!",
    "Best regards,\n{name}",
    "Cheers, {name}",
    "Thanks in advance.",
    "Kind regards,\n{name}",
    "- {name}",
    "Appreciate the help.",
    "Many thanks,\n{name}",
)
FOREIGN_GREETINGS = {
    "es": ("Hola,", "Buenos días,", "Buenas tardes,"),
    "de": ("Hallo,", "Guten Tag,", "Guten Morgen,"),
    "fr": ("Bonjour,", "Bonsoir,", "Salut,"),
}
FOREIGN_FILLERS = {
    "es": ("Perdón por mi inglés.", "Es un poco urgente.", "No sé qué más hacer."),
    "de": (
        "Entschuldigung für mein Englisch.",
        "Es ist ziemlich dringend.",
        "Ich weiß nicht weiter.",
    ),
    "fr": ("Désolé pour mon anglais.", "C'est assez urgent.", "Je ne sais plus quoi faire."),
}
FOREIGN_SIGNOFFS = {
    "es": ("Gracias.", "Muchas gracias,\n{name}", "Saludos,\n{name}"),
    "de": ("Vielen Dank.", "Danke schön,\n{name}", "Viele Grüße,\n{name}"),
    "fr": ("Merci beaucoup.", "Cordialement,\n{name}", "Merci d'avance,\n{name}"),
}
LANGUAGES = ("es", "de", "fr")

# --------------------------------------------------------------------------- ticket assembly


def _issue(spec: LabelSpec, rng: random.Random, golden: bool) -> str:
    """Golden favours the held-out paraphrases; train never sees them."""
    shared = spec.issues[:-HELD_OUT]
    if golden and rng.random() < 0.5:
        return rng.choice(spec.issues[-HELD_OUT:])
    return rng.choice(shared)


def _distractor(label: str, rng: random.Random, cross_domain: bool) -> str:
    """An incidental mention of another label, so the keywords alone are not enough."""
    domain = DOMAIN_OF[label]
    if cross_domain:
        pool = [other for other in LABELS if DOMAIN_OF[other] != domain]
    else:
        pool = [other for other in LABELS if DOMAIN_OF[other] == domain and other != label]
    return fill(rng.choice(SPECS[rng.choice(pool)].asides), rng)


def _short_body(label: str, edges: Sequence[str], rng: random.Random, golden: bool) -> list[str]:
    """The sentences of a typical 20-60 word ticket, in reading order."""
    spec, domain = SPECS[label], DOMAIN_OF[label]
    body: list[str] = []
    if rng.random() < 0.5:
        body.append(fill(rng.choice(CONTEXT[domain]), rng))
    body.append(fill(_issue(spec, rng, golden), rng))
    if "ambiguous_date" in edges:
        body.append(fill(rng.choice(spec.dated), rng, AMBIGUOUS_DATES))
    elif rng.random() < 0.2:
        body.append(fill(rng.choice(spec.dated), rng))
    if rng.random() < 0.45:
        body.append(fill(rng.choice(spec.details), rng))
    if rng.random() < 0.5:
        body.append(fill(rng.choice(spec.requests), rng))
    return body


def _insert_distractor(body: list[str], sentence: str, rng: random.Random) -> None:
    # Either up front as background or after the issue, never replacing the main cue.
    body.insert(rng.choice((0, len(body))), sentence)


def _long_paragraphs(label: str, body: list[str], rng: random.Random) -> list[list[str]]:
    """Grow a ticket to 120-250 words with background, extra details and what was tried."""
    spec, domain = SPECS[label], DOMAIN_OF[label]
    target = rng.randint(135, 215)
    background = _fresh(BACKGROUND[domain], 4, body, rng)
    details = _fresh(spec.details, 4, body, rng)
    tried = _fresh(TRIED, 3, body, rng)
    impact = rng.sample(IMPACT, 2)
    closing = [tried[0], impact[0], _fresh(spec.requests, 1, body, rng)[0]]
    paragraphs = [background[:1] + body, details[:1], closing]
    # Alternate where the padding goes so paragraphs stay balanced; stop at the target length.
    extras = [(0, s) for s in background[1:]] + [(1, s) for s in details[1:] + tried[1:]]
    extras.append((2, impact[1]))
    rng.shuffle(extras)
    for where, sentence in extras:
        if _count_words(paragraphs) >= target:
            break
        paragraphs[where].insert(len(paragraphs[where]) - (where == 2), sentence)
    return paragraphs


def _fresh(pool: Sequence[str], k: int, used: Sequence[str], rng: random.Random) -> list[str]:
    """Up to k filled sentences from pool that the ticket does not contain yet (no repeats)."""
    filled = [fill(template, rng) for template in rng.sample(pool, len(pool))]
    return [sentence for sentence in filled if sentence not in used][:k]


def _count_words(paragraphs: Sequence[Sequence[str]]) -> int:
    return sum(len(sentence.split()) for paragraph in paragraphs for sentence in paragraph)


def _add_foreign(body: list[str], label: str, rng: random.Random, lang: str) -> None:
    """Weave one to two sentences of Spanish, German or French into an English ticket."""
    native = rng.choice(SPECS[label].foreign[lang])
    body.insert(rng.randint(0, len(body)), native)
    if rng.random() < 0.4:
        body.insert(rng.randint(0, len(body)), rng.choice(FOREIGN_FILLERS[lang]))


def make_ticket(label: str, edges: Sequence[str], rng: random.Random, golden: bool = False) -> str:
    """One ticket for `label` carrying the requested edge cases."""
    lang = rng.choice(LANGUAGES) if "mixed_language" in edges else None
    body = _short_body(label, edges, rng, golden)
    if "cross_domain_distractor" in edges:
        _insert_distractor(body, _distractor(label, rng, cross_domain=True), rng)
    elif rng.random() < 0.08:
        _insert_distractor(body, _distractor(label, rng, cross_domain=False), rng)
    if lang:
        _add_foreign(body, label, rng, lang)
    greeting = _greeting(rng, lang)
    signoff = _signoff(rng, lang)
    if "long_ticket" in edges:
        paragraphs = [" ".join(p) for p in _long_paragraphs(label, body, rng)]
        text = "\n\n".join(([greeting] if greeting else []) + paragraphs + [signoff])
    else:
        text = " ".join(([greeting] if greeting else []) + body)
        text = f"{text}\n{signoff}" if signoff and rng.random() < 0.5 else f"{text} {signoff}"
    return _restyle(text.strip(), rng)


def _greeting(rng: random.Random, lang: str | None) -> str:
    if lang and rng.random() < 0.6:
        return rng.choice(FOREIGN_GREETINGS[lang])
    return rng.choice(GREETINGS) if rng.random() < 0.7 else ""


def _signoff(rng: random.Random, lang: str | None) -> str:
    if lang and rng.random() < 0.6:
        return fill(rng.choice(FOREIGN_SIGNOFFS[lang]), rng)
    return fill(rng.choice(SIGNOFFS), rng) if rng.random() < 0.6 else ""


def _restyle(text: str, rng: random.Random) -> str:
    """Some customers type in lower case or skip the final full stop."""
    roll = rng.random()
    if roll < 0.08:
        return text.lower()
    if roll < 0.14 and text.endswith("."):
        return text[:-1]
    return text


# --------------------------------------------------------------------------- dataset rows


def make_row(label: str, ticket: str, edges: Sequence[str]) -> dict:
    """A chat-format training row; key order is part of the file format."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": ticket},
            {"role": "assistant", "content": label},
        ],
        "label": label,
        "meta": {"domain": DOMAIN_OF[label], "edge": list(edges)},
    }


def _edge_plan(n: int, quota: dict[str, int], rng: random.Random) -> list[list[str]]:
    """Exact per-label edge counts, placed at random (kinds may overlap on one ticket)."""
    plan: list[list[str]] = [[] for _ in range(n)]
    for kind in EDGE_KINDS:
        for index in sorted(rng.sample(range(n), quota[kind])):
            plan[index].append(kind)
    return plan


def build_split(
    per_label: int,
    quota: dict[str, int],
    seed: str,
    golden: bool,
    exclude: frozenset[str] = frozenset(),
) -> list[dict]:
    """Unique tickets for every label, shuffled; texts in `exclude` are redrawn."""
    rng = random.Random(seed)
    seen: set[str] = set(exclude)  # membership checks only, never iterated
    rows: list[dict] = []
    for label in LABELS:
        for edges in _edge_plan(per_label, quota, rng):
            ticket = make_ticket(label, edges, rng, golden)
            while ticket in seen:
                ticket = make_ticket(label, edges, rng, golden)
            seen.add(ticket)
            rows.append(make_row(label, ticket, edges))
    rng.shuffle(rows)
    return rows


def build_train() -> list[dict]:
    return build_split(TRAIN_PER_LABEL, TRAIN_EDGE_QUOTA, TRAIN_SEED, golden=False)


def build_golden(train: Sequence[dict]) -> list[dict]:
    train_texts = frozenset(row["messages"][1]["content"] for row in train)
    return build_split(GOLDEN_PER_LABEL, GOLDEN_EDGE_QUOTA, GOLDEN_SEED, True, train_texts)


# --------------------------------------------------------------------------- pretraining corpus

CHAT_SYSTEMS = (
    "You are a helpful assistant.",
    "You are a friendly customer support agent.",
    "You are a support agent for a retail bank. Be polite and concise.",
    "You are a patient services assistant at a medical clinic.",
    "You help customers with their questions. Keep answers short.",
    "You are a courteous help desk assistant.",
    "You are an assistant that answers questions clearly and kindly.",
    "You work on the help desk of a bank and a health clinic network.",
)
GENERIC_ACKS = (
    "Thanks for reaching out.",
    "Thank you for contacting us.",
    "Hi, thanks for your message.",
    "I'm sorry for the trouble.",
)
GENERIC_CLOSINGS = (
    "Is there anything else I can help with?",
    "Let me know if you have any other questions.",
    "We'll keep you updated by email.",
)
FOLLOW_UPS = (
    (
        "Thanks, how long will that take?",
        "It usually takes a few business days, and we'll email you as soon as there's an update.",
    ),
    (
        "Ok, what do you need from me?",
        "Just confirm your full name and date of birth, and we can take it from there.",
    ),
    ("Thank you so much!", "You're welcome! Have a great day."),
    (
        "Can I do this online instead?",
        "Yes, you can do it from the website or the app under the help section.",
    ),
)
# (question, answer) pairs for generic chat about banking and health vocabulary.
GLOSSARY = (
    (
        "an overdraft",
        "An overdraft happens when you spend more than the balance in your account. "
        "Many banks charge a fee for it, so balance alerts can help.",
    ),
    (
        "APR",
        "APR stands for annual percentage rate. It is the yearly cost of borrowing, "
        "including interest and some fees.",
    ),
    (
        "a routing number",
        "A routing number is a nine-digit code that identifies your bank. "
        "You need it for direct deposits and transfers.",
    ),
    (
        "a credit score",
        "A credit score is a number that sums up how reliably you repay debt. "
        "Lenders use it to decide rates and approvals.",
    ),
    (
        "a savings account",
        "A savings account is a place to keep money you don't need every "
        "day. It usually earns a little interest.",
    ),
    (
        "escrow",
        "Escrow is money held by a third party, for example to pay property taxes and "
        "insurance along with a mortgage.",
    ),
    (
        "a deductible",
        "A deductible is the amount you pay for covered care before your insurance starts to pay.",
    ),
    (
        "a copay",
        "A copay is a fixed amount you pay for a visit or prescription, such as 20 "
        "dollars for a doctor's visit.",
    ),
    (
        "an insurance premium",
        "A premium is the amount you pay each month to keep your "
        "insurance active, whether or not you use it.",
    ),
    (
        "a generic drug",
        "A generic drug has the same active ingredient as the brand-name version "
        "and usually costs much less.",
    ),
    (
        "a referral",
        "A referral is a note from your primary doctor that sends you to a "
        "specialist. Some insurance plans require one.",
    ),
    (
        "an explanation of benefits",
        "An explanation of benefits is a statement from your insurer "
        "showing what was billed, what they paid and what you owe.",
    ),
    (
        "urgent care",
        "Urgent care clinics treat problems that need attention soon but are not "
        "emergencies, like sprains or minor infections.",
    ),
    (
        "fasting before a blood test",
        "Fasting means not eating for about eight to twelve hours "
        "before the test. Water is usually fine.",
    ),
    (
        "two-factor authentication",
        "Two-factor authentication adds a second step to logging in, "
        "such as a code sent to your phone.",
    ),
    (
        "a wire transfer",
        "A wire transfer moves money directly between banks, usually within a "
        "day. It is hard to reverse, so double-check the details.",
    ),
)
GLOSSARY_QUESTIONS = (
    "What is {term}?",
    "Can you explain {term} in simple words?",
    "quick question, what does {term} mean?",
    "I keep hearing about {term}. What is it?",
    "What's {term}, exactly?",
)
SMALL_TALK = (
    ("Hi!", "Hello! How can I help you today?"),
    (
        "Good morning, how are you?",
        "Good morning! I'm doing well, thanks for asking. What can I do for you?",
    ),
    (
        "What can you help me with?",
        "I can answer questions about your accounts, cards, "
        "appointments, prescriptions and more. What do you need?",
    ),
    ("Thanks for your help earlier.", "You're very welcome! I'm glad it worked out."),
    (
        "Are you a real person?",
        "I'm a virtual assistant, but I can connect you with a member of our team if you prefer.",
    ),
    (
        "What are your opening hours?",
        "Our phone lines are open Monday to Friday from 8 am to "
        "6 pm, and the app is available all the time.",
    ),
    (
        "It's raining again here.",
        "Sorry to hear that! I hope it clears up soon. Is there "
        "anything I can help you with today?",
    ),
    (
        "Can you give me a tip for saving money?",
        "Try setting up an automatic transfer to "
        "savings on payday. Small amounts add up over time.",
    ),
    (
        "How do I stay healthy during flu season?",
        "Wash your hands often, get enough sleep and "
        "ask your doctor whether a flu shot is right for you.",
    ),
    ("Bye!", "Goodbye! Have a wonderful day."),
)


def agent_reply(label: str, rng: random.Random) -> str:
    """A 1-3 sentence helpful reply: acknowledgement, next step, and maybe a question."""
    spec = SPECS[label]
    first = rng.choice(spec.acks) if rng.random() < 0.7 else rng.choice(GENERIC_ACKS)
    sentences = [first, rng.choice(spec.actions)]
    roll = rng.random()
    if roll < 0.35:
        sentences.append(rng.choice(spec.questions))
    elif roll < 0.5:
        sentences.append(rng.choice(GENERIC_CLOSINGS))
    elif roll < 0.65:
        sentences = [first, rng.choice(spec.questions)]
    return " ".join(sentences)


@functools.cache
def _golden_texts() -> frozenset[str]:
    return frozenset(row["messages"][1]["content"] for row in build_golden(build_train()))


def _pretraining_ticket(label: str, edges: Sequence[str], rng: random.Random) -> str:
    """A train-style ticket that is guaranteed not to be a golden ticket (no eval leakage)."""
    ticket = make_ticket(label, edges, rng)
    while ticket in _golden_texts():
        ticket = make_ticket(label, edges, rng)
    return ticket


def _support_conversation(rng: random.Random) -> list[dict]:
    label = rng.choice(LABELS)
    # Train-rate edge cases, drawn independently, so the base model has seen every kind.
    edges = [kind for kind in EDGE_KINDS if rng.random() < 0.12]
    messages = [
        {"role": "system", "content": rng.choice(CHAT_SYSTEMS)},
        {"role": "user", "content": _pretraining_ticket(label, edges, rng)},
        {"role": "assistant", "content": agent_reply(label, rng)},
    ]
    if rng.random() < 0.2:
        question, answer = rng.choice(FOLLOW_UPS)
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    return messages


def _general_turn(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.6:
        term, answer = rng.choice(GLOSSARY)
        question = rng.choice(GLOSSARY_QUESTIONS).format(term=term)
        return question[0].upper() + question[1:], answer
    return rng.choice(SMALL_TALK)


def _general_conversation(rng: random.Random) -> list[dict]:
    messages = [{"role": "system", "content": rng.choice(CHAT_SYSTEMS)}]
    for _ in range(rng.choice((1, 1, 2))):
        question, answer = _general_turn(rng)
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    return messages


FIELD_WORDS = {
    "billing": "billing",
    "dispute": "dispute",
    "card": "card",
    "lost": "lost item",
    "stolen": "stolen item",
    "fraud": "fraud check",
    "report": "report",
    "account": "account",
    "access": "access grant",
    "loan": "loan",
    "inquiry": "inquiry",
    "appointment": "appointment",
    "scheduling": "scheduling run",
    "prescription": "prescription",
    "refill": "refill",
    "insurance": "insurance policy",
    "claim": "claim",
    "medical": "medical file",
    "records": "records bundle",
    "lab": "lab",
    "results": "results sheet",
}
FIELD_PARTS = {
    "id": "identifier",
    "date": "date",
    "number": "number",
    "status": "status",
    "code": "code",
    "type": "type",
    "count": "count",
    "note": "note",
    "owner": "owner",
    "link": "link",
    "amount": "amount",
    "limit": "limit",
}
FIELD_QUESTIONS = (
    "Which field holds the {desc}? Answer with the field name only.",
    "What is the name of the field for the {desc}? Just the name, please.",
    "Give me the field that stores the {desc}, nothing else.",
)


def _field_conversation(rng: random.Random) -> list[dict]:
    """Questions about snake_case form fields, some answered with the bare field name.

    Teaches the base model the vocabulary of identifiers, answered at the start of a turn,
    over words the support queues also use, without any queue name itself.
    """
    word = rng.choice(sorted(FIELD_WORDS))
    part = rng.choice(sorted(FIELD_PARTS))
    if rng.random() < 0.5:
        field, desc = f"{word}_{part}", f"{FIELD_PARTS[part]} of the {FIELD_WORDS[word]}"
    else:
        field, desc = f"{part}_{word}", f"{FIELD_WORDS[word]} {FIELD_PARTS[part]}"
    system = {"role": "system", "content": rng.choice(CHAT_SYSTEMS)}
    if rng.random() < 0.6:
        question = rng.choice(FIELD_QUESTIONS).format(desc=desc)
        return [
            system,
            {"role": "user", "content": question},
            {"role": "assistant", "content": field},
        ]
    question = f"What does the field {field} mean?"
    answer = f"{field} holds the {desc}."
    return [system, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]


TAG_SYSTEMS = (
    "Tag the message. Reply with exactly one tag: {tags}.",
    "Pick the one tag that fits the message. Tags: {tags}. Answer with the tag only.",
    "Label this message with exactly one of: {tags}.",
    "Sort the message into one bucket and reply with its name only: {tags}.",
)
URGENT_PHRASES = (
    "This is urgent, please treat it as a priority.",
    "URGENT: I need this solved today.",
    "It cannot wait, please escalate immediately.",
    "Please handle this as an emergency.",
)


def _tagging_conversation(rng: random.Random) -> list[dict]:
    """A generic "answer with one listed tag" task, on tag sets other than the support queues.

    This gives the base model the skill every instruction-tuned model has (read a tag list,
    answer with one tag, snake_case and all) without ever showing it the ten support labels,
    so fine-tuning still has to teach which queue a ticket belongs to.
    """
    label = rng.choice(LABELS)
    kind = rng.choice(("domain", "language", "urgency", "length"))
    flag = rng.random() < 0.5
    if kind == "domain":
        ticket = make_ticket(label, [], rng)
        tags = ["finance_ticket", "healthcare_ticket"]
        answer = tags[0] if label in FINANCE_LABELS else tags[1]
    elif kind == "language":
        ticket = make_ticket(label, ["mixed_language"] if flag else [], rng)
        tags = ["english_only", "mixed_language"]
        answer = tags[1] if flag else tags[0]
    elif kind == "urgency":
        ticket = make_ticket(label, [], rng)
        if flag:
            ticket += " " + rng.choice(URGENT_PHRASES)
        tags = ["urgent_request", "routine_request"]
        answer = tags[0] if flag else tags[1]
    else:
        ticket = make_ticket(label, ["long_ticket"] if flag else [], rng)
        tags = ["short_message", "long_message"]
        answer = tags[1] if flag else tags[0]
    rng.shuffle(tags)  # the answer must be read from the list, not from its position
    return [
        {"role": "system", "content": rng.choice(TAG_SYSTEMS).format(tags=", ".join(tags))},
        {"role": "user", "content": ticket},
        {"role": "assistant", "content": answer},
    ]


def pretraining_corpus(n_docs: int, seed: int) -> list[list[dict]]:
    """Chat conversations for pretraining the tiny base model (never the classification task).

    About 45% are support tickets answered in free text by an agent, 25% generic tagging tasks
    on other tag sets, 10% questions about snake_case form fields, 20% short general chat. The
    seed space is disjoint from the train/golden generators.
    """
    rng = random.Random(f"{PRETRAIN_SEED}:{seed}")
    corpus = []
    for _ in range(n_docs):
        draw = rng.random()
        if draw < 0.2:
            corpus.append(_general_conversation(rng))
        elif draw < 0.45:
            corpus.append(_tagging_conversation(rng))
        elif draw < 0.55:
            corpus.append(_field_conversation(rng))
        else:
            corpus.append(_support_conversation(rng))
    assert not any(m["content"] in LABELS for conversation in corpus for m in conversation), (
        "the pretraining corpus must never contain a support queue label"
    )
    return corpus


# --------------------------------------------------------------------------- main


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _check(train: Sequence[dict], golden: Sequence[dict]) -> None:
    train_texts = {row["messages"][1]["content"] for row in train}
    golden_texts = [row["messages"][1]["content"] for row in golden]
    assert len(train) == TRAIN_PER_LABEL * len(LABELS)
    assert len(golden) == GOLDEN_PER_LABEL * len(LABELS)
    assert not train_texts.intersection(golden_texts), "golden ticket repeats a train ticket"
    assert all(len(text.split()) <= 300 for text in train_texts.union(golden_texts))


def _summary(name: str, rows: Sequence[dict]) -> str:
    labels = {label: 0 for label in LABELS}
    edges = {kind: 0 for kind in EDGE_KINDS}
    for row in rows:
        labels[row["label"]] += 1
        for kind in row["meta"]["edge"]:
            edges[kind] += 1
    return f"{name}: {len(rows)} rows\n  labels: {labels}\n  edges: {edges}"


def main() -> None:
    train = build_train()
    golden = build_golden(train)
    _check(train, golden)
    write_jsonl(DATA_DIR / "train.jsonl", train)
    write_jsonl(DATA_DIR / "golden.jsonl", golden)
    print(_summary("train", train))
    print(_summary("golden", golden))
    print(f"wrote {DATA_DIR}")


if __name__ == "__main__":
    main()
