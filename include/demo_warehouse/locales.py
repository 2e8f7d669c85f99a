"""Name, city and email-domain pools per country.

Kept apart from the generator so the data reads like data. Lists are comma-separated strings
to stay compact. Every name is a pair (display, ascii) so email addresses stay plain ASCII,
also for Cyrillic, Greek, CJK and Arabic names; a domain listed twice is twice as likely.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

Name = tuple[str, str]

_ASCII_EXTRA = str.maketrans({"ß": "ss", "Ł": "L", "ł": "l", "ø": "o", "æ": "ae", "ı": "i"})


def to_ascii(name: str) -> str:
    """Lower-case ASCII form of a Latin-script name, as people type it into an email address."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_ASCII_EXTRA))
    return re.sub(r"[^a-z-]", "", decomposed.encode("ascii", "ignore").decode().lower())


@dataclass(frozen=True)
class Locale:
    country: str
    weight: int
    cities: tuple[str, ...]
    first_names: tuple[Name, ...]
    last_names: tuple[Name, ...]
    domains: tuple[str, ...]


def _latin(country: str, weight: int, cities: str, first: str, last: str, domains: str) -> Locale:
    def names(text: str) -> tuple[Name, ...]:
        return tuple((name, to_ascii(name)) for name in text.split(","))

    return Locale(country, weight, _split(cities), names(first), names(last), _split(domains))


def _script(country: str, cities: str, first: str, last: str, domains: str) -> Locale:
    """Names as "display:ascii" pairs: these scripts need an explicit transliteration."""

    def names(text: str) -> tuple[Name, ...]:
        return tuple(
            (display, ascii_) for display, _, ascii_ in (pair.partition(":") for pair in text.split(","))
        )

    return Locale(country, 1, _split(cities), names(first), names(last), _split(domains))


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


_EN_FIRST = (
    "James,Mary,Robert,Patricia,John,Jennifer,Michael,Linda,David,Elizabeth,William,Barbara,Richard,Susan,"
    "Joseph,Jessica,Thomas,Sarah,Christopher,Karen,Daniel,Emily,Matthew,Olivia,Ethan,Chloe,Liam,Sophie,"
    "Noah,Grace,Oliver,Amelia,Jack,Isla,Harry,Zoe,Megan,Ryan,Hannah,Connor,Aaliyah,Mateo,Priya,Siobhan"
)
_EN_LAST = (
    "Smith,Johnson,Williams,Brown,Jones,Garcia,Miller,Davis,Wilson,Anderson,Taylor,Thomas,Moore,Jackson,"
    "Martin,Lee,Thompson,White,Harris,Clark,Lewis,Walker,Hall,Young,King,Wright,Scott,Green,Baker,Adams,"
    "Nelson,Campbell,Evans,Roberts,Hughes,O'Brien,O'Connor,MacDonald,Patel,Nguyen,Kowalski,Okafor"
)

#: Where most customers come from, weighted by `Locale.weight`.
LATIN_LOCALES: tuple[Locale, ...] = (
    _latin(
        "US", 30,
        "New York,Los Angeles,Chicago,Houston,Phoenix,Philadelphia,San Antonio,San Diego,Dallas,Austin,"
        "Seattle,Denver,Boston,Portland,Atlanta,Miami",
        _EN_FIRST, _EN_LAST,
        "gmail.com,gmail.com,gmail.com,yahoo.com,outlook.com,hotmail.com,icloud.com,aol.com,comcast.net",
    ),
    _latin(
        "GB", 12,
        "London,Manchester,Birmingham,Leeds,Glasgow,Bristol,Edinburgh,Liverpool,Cardiff,Belfast",
        _EN_FIRST, _EN_LAST,
        "gmail.com,gmail.com,yahoo.co.uk,hotmail.co.uk,outlook.com,btinternet.com,icloud.com,sky.com",
    ),
    _latin(
        "DE", 12,
        "Berlin,Hamburg,München,Köln,Frankfurt am Main,Stuttgart,Düsseldorf,Leipzig,Dresden,Nürnberg",
        "Anna,Lukas,Leonie,Maximilian,Sophie,Felix,Marie,Jonas,Lena,Paul,Laura,Finn,Hannah,Elias,Julia,"
        "Tobias,Katharina,Jürgen,Sabine,Uwe,Birgit,Dieter,Jörg,Grete,Günther,Özlem",
        "Müller,Schmidt,Schneider,Fischer,Weber,Meyer,Wagner,Becker,Schulz,Hoffmann,Schäfer,Koch,Bauer,"
        "Richter,Klein,Wolf,Schröder,Neumann,Schwarz,Zimmermann,Braun,Krüger,Hartmann,Weiß,Groß,Yılmaz",
        "web.de,web.de,gmx.de,gmx.de,gmail.com,t-online.de,outlook.de,posteo.de",
    ),
    _latin(
        "FR", 8,
        "Paris,Lyon,Marseille,Toulouse,Nice,Nantes,Bordeaux,Lille,Strasbourg",
        "Camille,Léa,Louis,Chloé,Gabriel,Manon,Hugo,Inès,Jules,Élodie,Théo,Margaux,Nathan,Anaïs,Lucas,"
        "Céline,François,Amélie,Jean-Pierre,Marie-Claire",
        "Martin,Bernard,Dubois,Thomas,Robert,Richard,Petit,Durand,Leroy,Moreau,Simon,Laurent,Lefèvre,"
        "Michel,Girard,Bertrand,Roux,Fontaine,Chevalier,Lemaître",
        "orange.fr,gmail.com,gmail.com,free.fr,laposte.net,hotmail.fr,sfr.fr",
    ),
    _latin(
        "ES", 5,
        "Madrid,Barcelona,Valencia,Sevilla,Zaragoza,Málaga,Bilbao",
        "Lucía,Hugo,Martina,Mateo,Sofía,Pablo,Valeria,Álvaro,Carmen,Javier,Paula,Sergio,Elena,Diego,Nuria,"
        "Alejandro,María José,Íñigo",
        "García,Fernández,González,Rodríguez,López,Martínez,Sánchez,Pérez,Gómez,Jiménez,Ruiz,Hernández,"
        "Díaz,Moreno,Muñoz,Álvarez,Romero,Ibáñez,Núñez",
        "gmail.com,gmail.com,hotmail.es,yahoo.es,outlook.es,telefonica.net",
    ),
    _latin(
        "IT", 5,
        "Roma,Milano,Napoli,Torino,Bologna,Firenze,Palermo",
        "Giulia,Francesco,Sofia,Alessandro,Aurora,Lorenzo,Chiara,Matteo,Martina,Leonardo,Giorgia,Andrea,"
        "Federica,Niccolò,Beatrice,Davide",
        "Rossi,Russo,Ferrari,Esposito,Bianchi,Romano,Colombo,Ricci,Marino,Greco,Bruno,Gallo,Conti,De Luca,"
        "Costa,Giordano,Mancini,Rizzo,D'Angelo",
        "libero.it,gmail.com,gmail.com,virgilio.it,alice.it,hotmail.it,tiscali.it",
    ),
    _latin(
        "NL", 4,
        "Amsterdam,Rotterdam,Den Haag,Utrecht,Eindhoven,Groningen",
        "Daan,Emma,Sem,Julia,Lucas,Mila,Levi,Tess,Bram,Sanne,Thijs,Fleur,Anouk,Ruben",
        "de Jong,Jansen,de Vries,van den Berg,van Dijk,Bakker,Janssen,Visser,Smit,Meijer,de Boer,Mulder,"
        "de Groot,Bos,Vos,van der Meer",
        "gmail.com,gmail.com,ziggo.nl,kpnmail.nl,hotmail.nl,outlook.com",
    ),
    _latin(
        "PL", 4,
        "Warszawa,Kraków,Łódź,Wrocław,Poznań,Gdańsk",
        "Zuzanna,Jakub,Julia,Antoni,Maja,Jan,Zofia,Szymon,Łukasz,Małgorzata,Agnieszka,Paweł,Katarzyna,"
        "Piotr,Krzysztof,Anna",
        "Nowak,Kowalski,Wiśniewski,Wójcik,Kowalczyk,Kamiński,Lewandowski,Zieliński,Szymański,Woźniak,"
        "Dąbrowski,Kozłowska,Jankowska,Mazur",
        "wp.pl,onet.pl,o2.pl,interia.pl,gmail.com,gmail.com",
    ),
    _latin(
        "SE", 2,
        "Stockholm,Göteborg,Malmö,Uppsala",
        "Alice,William,Maja,Oscar,Elsa,Lucas,Astrid,Hugo,Ebba,Nils,Linnéa,Björn,Åsa,Sören",
        "Andersson,Johansson,Karlsson,Nilsson,Eriksson,Larsson,Olsson,Persson,Svensson,Gustafsson,"
        "Lindström,Åberg,Sjöberg,Lindqvist",
        "gmail.com,gmail.com,hotmail.se,telia.com,outlook.com",
    ),
    _latin(
        "CA", 4,
        "Toronto,Montréal,Vancouver,Calgary,Ottawa,Québec",
        _EN_FIRST, _EN_LAST,
        "gmail.com,gmail.com,rogers.com,shaw.ca,sympatico.ca,outlook.com,videotron.ca",
    ),
    _latin(
        "AU", 3,
        "Sydney,Melbourne,Brisbane,Perth,Adelaide",
        _EN_FIRST, _EN_LAST,
        "gmail.com,gmail.com,bigpond.com,optusnet.com.au,outlook.com",
    ),
    _latin(
        "BR", 3,
        "São Paulo,Rio de Janeiro,Brasília,Salvador,Belo Horizonte,Curitiba",
        "Miguel,Alice,Arthur,Helena,Heitor,Laura,Gael,Valentina,João,Ana Clara,Thiago,Beatriz,Luíza,Gonçalo",
        "Silva,Santos,Oliveira,Souza,Rodrigues,Ferreira,Alves,Pereira,Lima,Gomes,Ribeiro,Carvalho,Araújo,"
        "Conceição",
        "gmail.com,gmail.com,uol.com.br,bol.com.br,hotmail.com,terra.com.br",
    ),
)  # fmt: skip

#: Locales whose names are written in a non-Latin script, keyed by the dirt kind that selects them.
SCRIPT_LOCALES: dict[str, tuple[Locale, ...]] = {
    "cyrillic_name": (
        _script(
            "UA", "Київ,Львів,Одеса,Харків,Дніпро",
            "Олена:olena,Андрій:andriy,Оксана:oksana,Дмитро:dmytro,Тетяна:tetiana,Іван:ivan,Юлія:yuliia,"
            "Богдан:bohdan",
            "Шевченко:shevchenko,Коваленко:kovalenko,Бондаренко:bondarenko,Ткаченко:tkachenko,"
            "Мельник:melnyk,Кравченко:kravchenko,Олійник:oliinyk",
            "ukr.net,gmail.com,gmail.com,i.ua,meta.ua",
        ),
        _script(
            "BG", "София,Пловдив,Варна,Бургас",
            "Георги:georgi,Мария:maria,Иван:ivan,Елена:elena,Димитър:dimitar,Десислава:desislava",
            "Иванов:ivanov,Петрова:petrova,Георгиев:georgiev,Димитрова:dimitrova,Николов:nikolov",
            "abv.bg,gmail.com,mail.bg",
        ),
    ),
    "greek_name": (
        _script(
            "GR", "Αθήνα,Θεσσαλονίκη,Πάτρα,Ηράκλειο,Λάρισα",
            "Γιώργος:giorgos,Μαρία:maria,Δημήτρης:dimitris,Ελένη:eleni,Νίκος:nikos,Κατερίνα:katerina,"
            "Σοφία:sofia",
            "Παπαδόπουλος:papadopoulos,Νικολάου:nikolaou,Γεωργίου:georgiou,Οικονόμου:oikonomou,"
            "Παπαδοπούλου:papadopoulou,Βασιλείου:vasileiou",
            "gmail.com,gmail.com,yahoo.gr,hotmail.gr,otenet.gr",
        ),
    ),
    "cjk_name": (
        _script(
            "JP", "東京,大阪,横浜,名古屋,札幌,福岡",
            "陽翔:haruto,さくら:sakura,結衣:yui,蓮:ren,美咲:misaki,大輝:daiki,ひなた:hinata",
            "佐藤:sato,鈴木:suzuki,高橋:takahashi,田中:tanaka,伊藤:ito,渡辺:watanabe",
            "gmail.com,yahoo.co.jp,docomo.ne.jp,icloud.com",
        ),
        _script(
            "CN", "北京,上海,广州,深圳,成都",
            "伟:wei,芳:fang,娜:na,敏:min,静:jing,强:qiang,秀英:xiuying",
            "王:wang,李:li,张:zhang,刘:liu,陈:chen,杨:yang,欧阳:ouyang",
            "qq.com,163.com,126.com,sina.com",
        ),
        _script(
            "KR", "서울,부산,인천,대구",
            "민준:minjun,서연:seoyeon,지우:jiwoo,하은:haeun,도윤:doyun",
            "김:kim,이:lee,박:park,최:choi,정:jung",
            "naver.com,daum.net,gmail.com",
        ),
    ),
    "arabic_name": (
        _script(
            "AE", "دبي,أبو ظبي,الشارقة",
            "محمد:mohamed,فاطمة:fatima,أحمد:ahmed,مريم:mariam,علي:ali,نور:nour,يوسف:youssef",
            "المنصوري:almansouri,الحسيني:alhusseini,العلي:alali,الشامسي:alshamsi",
            "gmail.com,hotmail.com,yahoo.com,outlook.com",
        ),
        _script(
            "EG", "القاهرة,الإسكندرية,الجيزة",
            "محمد:mohamed,ليلى:layla,عمر:omar,سارة:sara,خالد:khaled,هدى:hoda",
            "حسن:hassan,إبراهيم:ibrahim,عبد الله:abdallah,السيد:elsayed,مصطفى:mostafa",
            "gmail.com,yahoo.com,hotmail.com",
        ),
    ),
}  # fmt: skip

EMOJI = ("🌸", "🚀", "✨", "😊", "👍🏽", "❤️", "🏳️‍🌈", "🐶", "☕", "🎉")
PLUS_TAGS = ("news", "shop", "promo", "newsletter", "deals", "mailchimp")

BY_COUNTRY: dict[str, Locale] = {
    locale.country: locale
    for locale in LATIN_LOCALES + tuple(loc for group in SCRIPT_LOCALES.values() for loc in group)
}
