"""Word lists for the self-distillation seed prompts (written for edgespec; no benchmark text).

Plain data: seeds.py combines these with templates.
"""

from __future__ import annotations

# fmt: off
STEM_TOPICS = (
    "photosynthesis", "black holes", "the water cycle", "plate tectonics", "DNA replication",
    "the immune system", "vaccines", "climate change", "renewable energy", "nuclear fusion",
    "quantum entanglement", "the theory of relativity", "Newton's laws of motion", "entropy",
    "the periodic table", "chemical bonds", "acids and bases", "electric circuits", "magnetism",
    "the speed of light", "gravity", "evolution by natural selection", "the human heart",
    "neurons", "antibiotic resistance", "the greenhouse effect", "ocean currents", "volcanoes",
    "earthquakes", "the solar system", "exoplanets", "the Big Bang", "machine learning",
    "neural networks", "the internet", "encryption", "blockchains", "prime numbers", "probability",
    "statistics", "calculus", "linear algebra", "the Pythagorean theorem", "compound interest",
    "binary numbers", "algorithms", "sorting algorithms", "recursion", "databases",
    "operating systems", "compilers", "semiconductors", "batteries", "solar panels",
    "wind turbines", "3D printing", "GPS", "radio waves", "lasers", "the microbiome", "sleep",
    "memory in the brain", "photosynthesis in algae", "bees and pollination", "coral reefs",
    "rainforests", "glaciers", "weather forecasting", "tides", "rainbows", "the ozone layer",
    "cloud computing", "speculative decoding in language models", "caching", "hash tables",
)

HUMANITIES_TOPICS = (
    "the French Revolution", "the Roman Empire", "ancient Egypt", "the Renaissance",
    "the Industrial Revolution", "the printing press", "the Silk Road", "the Cold War",
    "World War I", "the Great Depression", "democracy", "the separation of powers",
    "supply and demand", "inflation", "opportunity cost", "stoicism", "utilitarianism",
    "Plato's allegory of the cave", "existentialism", "the scientific method", "impressionism",
    "Shakespeare's tragedies", "the hero's journey", "haiku poetry", "jazz", "baroque music",
    "the Olympic Games", "the history of chess", "world religions", "human rights",
    "the United Nations", "globalization", "urbanization", "the history of money",
    "cognitive biases", "motivation", "habits", "leadership", "negotiation", "public speaking",
    "minimalism", "the history of tea", "the history of coffee", "mythology", "folk tales",
    "the Maya civilization", "the Vikings", "the Ottoman Empire", "the Meiji Restoration",
    "the history of writing", "language learning", "linguistics", "ethics of AI",
)

EVERYDAY_TOPICS = (
    "bread baking", "houseplants", "running", "yoga", "budgeting", "saving for retirement",
    "meal planning", "composting", "recycling", "time management", "remote work", "job interviews",
    "writing a resume", "learning to swim", "camping", "travelling on a budget", "dog training",
    "cat behaviour", "gardening in small spaces", "coffee brewing", "healthy breakfasts",
    "sleep hygiene", "stress management", "moving to a new city", "cycling to work", "board games",
    "photography", "birdwatching", "knitting", "home repairs", "first aid", "car maintenance",
    "online privacy", "strong passwords", "email etiquette", "small talk",
)

AUDIENCES = (
    "child", "high school student", "beginner", "busy professional", "grandparent",
)

HOWTO_TASKS = (
    "bake sourdough bread", "change a flat tire", "write a cover letter",
    "start a vegetable garden", "learn a new language quickly", "improve my sleep",
    "make a budget", "prepare for a job interview", "train for a 5k run", "clean a cast iron pan",
    "set up a home network", "back up my photos", "write a good essay introduction",
    "give a presentation", "study for an exam", "make cold brew coffee", "reduce food waste",
    "organize my closet", "fix a leaky faucet", "choose a laptop", "learn to play guitar",
    "meditate", "make friends in a new city", "negotiate a salary", "plan a birthday party",
    "care for a succulent", "brew green tea", "write a haiku", "read more books",
    "stop procrastinating", "make pancakes", "iron a shirt", "paint a room",
    "take better photos with a phone", "start journaling", "teach a dog to sit", "calculate a tip",
    "convert Celsius to Fahrenheit", "use git branches", "debug a Python script",
    "write unit tests", "learn SQL", "set up a Python virtual environment",
    "read a nutrition label",
)

EMAIL_TONES = (
    "polite", "friendly", "formal", "short", "persuasive",
)
EMAIL_RECIPIENTS = (
    "my manager", "a colleague", "a customer", "my landlord", "a professor", "a hiring manager",
    "my team", "a neighbour", "a supplier", "the school principal",
)
EMAIL_SUBJECTS = (
    "asking for a day off", "a project delay", "a meeting next Tuesday", "a late payment",
    "a broken heater", "feedback on a report", "a job application", "thanking them for their help",
    "rescheduling an appointment", "a new product launch", "a noisy party last weekend",
    "requesting an extension", "a refund request", "an invitation to a workshop",
    "introducing a new team member", "the results of a survey",
)

STORY_CHARACTERS = (
    "a lonely robot", "a young wizard", "a retired detective", "a curious cat",
    "a lighthouse keeper", "an astronaut", "a baker", "a dragon", "a time traveller",
    "a shy student", "an old fisherman", "a talking tree", "a street musician", "a lost puppy",
    "a chess champion", "a farmer",
)
STORY_EVENTS = (
    "finds a mysterious map", "learns to fly", "loses something important", "meets a stranger",
    "has to solve a puzzle", "discovers a secret door", "wins a contest", "gets lost in a forest",
    "makes an unlikely friend", "must save their village", "receives a strange letter",
    "wakes up in the future",
)
POEM_FORMS = (
    "short poem", "haiku", "limerick", "rhyming poem", "free verse poem", "sonnet",
)
POEM_TOPICS = (
    "the ocean", "autumn leaves", "city lights", "friendship", "a rainy day", "the moon",
    "morning coffee", "mountains", "a cat sleeping", "winter", "hope", "the stars", "spring",
    "a train journey", "old books", "the sea at night", "a garden", "silence",
)
OTHER_WRITING = (
    "Write a product description for {product}.", "Write a short advertisement for {product}.",
    "Write three catchy slogans for {product}.", "Write a customer review of {product}.",
)
PRODUCTS = (
    "a reusable water bottle", "noise-cancelling headphones", "a smart thermostat",
    "a handmade candle", "an electric bike", "a language learning app", "a board game",
    "a solar phone charger", "a standing desk", "organic coffee beans",
)

ROLES = (
    ("a travel agent", "I want a three-day trip to Rome. What do you suggest?"),
    ("a personal trainer", "I have twenty minutes a day. What workout should I do?"),
    ("a chef", "What can I cook with rice, eggs and spinach?"),
    ("a career coach", "I feel stuck in my job. What should I do?"),
    ("a librarian", "Can you recommend some books for a ten-year-old who loves space?"),
    ("a math tutor", "I don't understand fractions. Can you help?"),
    ("a tour guide in Paris", "What should I see on my first day?"),
    ("a medieval knight", "Tell me about your day."),
    ("a pirate captain", "Where is the treasure hidden?"),
    ("a detective", "Someone stole the cookies from the kitchen. Who did it?"),
    ("a customer support agent", "My order arrived damaged. What can I do?"),
    ("a museum curator", "What is the most interesting item in your collection?"),
    ("Sherlock Holmes", "What can you tell about me from my muddy boots?"),
    ("a friendly alien visiting Earth", "What do you think of humans?"),
    ("a gardener", "Why are the leaves of my tomato plant turning yellow?"),
    ("a job interviewer", "Please start the interview for a software engineer position."),
)

LANGUAGES = (
    "Python", "JavaScript", "C", "Rust", "Go", "Java", "SQL", "Bash",
)
CODE_TASKS = (
    "reverses a string", "checks whether a number is prime", "returns the n-th Fibonacci number",
    "counts the words in a text", "removes duplicates from a list", "finds the largest element",
    "sorts a list of numbers with bubble sort", "checks whether a string is a palindrome",
    "merges two sorted lists", "computes the factorial of a number",
    "converts Celsius to Fahrenheit", "reads a file and prints its lines",
    "computes the average of a list", "flattens a nested list",
    "counts how often each character appears", "validates an email address",
    "implements binary search", "returns the greatest common divisor of two numbers",
    "splits a sentence into words", "capitalizes the first letter of each word",
)
CODE_SNIPPETS = (
    "def f(xs):\n    return [x * x for x in xs if x % 2 == 0]",
    "total = 0\nfor i in range(1, 11):\n    total += i\nprint(total)",
    "def g(s):\n    return s == s[::-1]",
    "items = {'a': 3, 'b': 1}\nprint(sorted(items, key=items.get))",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    "const add = (a, b) => a + b;\nconsole.log([1, 2, 3].reduce(add, 0));",
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 2;",
    "def avg(xs):\n    return sum(xs) / len(xs)",
    "for i in range(10):\n    if i == 5:\n        break\n    print(i)",
    "def count(words):\n    d = {}\n    for w in words:\n"
    "        d[w] = d.get(w, 0) + 1\n    return d",
)
BUGGY_SNIPPETS = (
    "def average(xs):\n    return sum(xs) / len(xs) + 1", "def is_even(n):\n    return n % 2 == 1",
    "def last(xs):\n    return xs[len(xs)]", "for i in range(10)\n    print(i)",
    "def greet(name):\n    print('Hello, ' + nme)",
    "def maximum(xs):\n    m = 0\n    for x in xs:\n"
    "        if x > m:\n            m = x\n    return m",
)
CODE_PAIRS = (
    ("a list", "a tuple in Python"), ("TCP", "UDP"), ("SQL", "NoSQL databases"),
    ("a process", "a thread"), ("git merge", "git rebase"), ("==", "is in Python"),
)

PEOPLE = (
    "Alice Martin", "Bob Chen", "Carla Gomez", "David Okafor", "Emma Schmidt", "Farid Haddad",
    "Grace Kim", "Hugo Leroy", "Ines Silva", "Jonas Berg", "Keiko Tanaka", "Liam O'Brien",
)
CITIES = (
    "Paris", "Lisbon", "Nairobi", "Toronto", "Osaka", "Berlin", "Lima", "Cairo", "Oslo", "Denver",
    "Melbourne", "Seoul",
)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
COMPANIES = (
    "Acme Corp", "Blue River Labs", "Nordlicht GmbH", "Sunrise Foods", "Pixel Works",
)
JOBS = (
    "engineer", "teacher", "nurse", "designer", "accountant", "chef", "pilot", "journalist",
)

EN_SENTENCES = (
    "Where is the train station?", "I would like a cup of coffee, please.",
    "The weather is beautiful today.", "Can you help me find my keys?",
    "We are going to the beach tomorrow.", "My sister works at a hospital.",
    "How much does this book cost?", "I have been learning to cook.",
    "The museum opens at nine in the morning.", "Please close the window.",
    "They bought a new house last year.", "What time does the meeting start?",
    "I forgot my umbrella at home.", "The children are playing in the garden.",
    "This restaurant serves excellent fish.", "Could you speak more slowly?",
    "He reads the newspaper every morning.", "Our flight was delayed by two hours.",
    "I am allergic to peanuts.", "The library is closed on Sundays.",
    "She plays the piano beautifully.", "Happy birthday! I hope you have a wonderful day.",
    "Thank you for your help yesterday.", "The soup is too hot to eat.",
)
FOREIGN_SENTENCES = (
    ("French", "Je voudrais réserver une table pour deux personnes."),
    ("French", "Il fait très froid ce matin."),
    ("French", "Où se trouve la bibliothèque la plus proche ?"),
    ("French", "Nous avons visité le musée hier après-midi."),
    ("Spanish", "¿Cuánto cuesta el billete de autobús?"),
    ("Spanish", "Mi hermano vive en Barcelona desde hace tres años."),
    ("Spanish", "Me gusta mucho leer novelas de misterio."),
    ("Spanish", "El tren sale a las ocho de la mañana."),
    ("German", "Ich habe heute keine Zeit."),
    ("German", "Das Wetter ist heute sehr schön."),
    ("German", "Kannst du mir bitte das Salz geben?"),
    ("German", "Wir fahren im Sommer an die Nordsee."),
)
TARGET_LANGUAGES = (
    "French", "Spanish", "German",
)

OBJECTS = (
    "apples", "pencils", "books", "cookies", "marbles", "stickers", "tickets", "bottles",
)
NAMES = (
    "Tom", "Sara", "Ali", "Mia", "Ken", "Lena", "Raj", "Zoe", "Omar", "Nina",
)
CATEGORIES_AB = (
    ("cats", "mammals", "animals"), ("roses", "flowers", "plants"), ("squares", "rectangles",
    "shapes"), ("violins", "string instruments", "musical instruments"), ("trout", "fish",
    "animals that live in water"), ("oaks", "trees", "plants"),
)

PASSAGE_TOPICS = STEM_TOPICS[:40] + HUMANITIES_TOPICS[:30] + EVERYDAY_TOPICS[:20]

FOLLOWUPS = (
    "Can you make that shorter?", "Can you give me an example?", "Explain that to a ten-year-old.",
    "Summarize your answer in three bullet points.",
    "Thanks! Can you say more about the first point?",
    "Rewrite your answer in a more formal tone.", "What are the limitations of that?",
    "Can you put that in a table?", "What would you do differently?",
    "Is there anything I should avoid?",
)
# fmt: on
